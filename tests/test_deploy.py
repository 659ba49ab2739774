"""deploy/ validated offline: no Docker engine or cluster here, so the files are parsed and
their properties checked (compose, Dockerfile, the kustomize base and its resources)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from kombu.transport.redis import PRIORITY_STEPS, Channel

from worker.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"


def k8s_documents() -> list[dict[str, Any]]:
    """What `kubectl kustomize deploy/k8s` would gather: every resource it lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / resource).read_text()) if d)
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


def test_compose_scales_workers_without_names_or_host_ports() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "flower"}
    assert all("container_name" not in s for s in services.values())
    assert "ports" not in services["worker"]
    assert all(":" not in str(p) for s in services.values() for p in s.get("ports", []))
    timeout = Settings().timeout_s + Settings().kill_grace_s
    assert seconds(services["worker"]["stop_grace_period"]) >= timeout


def test_compose_redis_keeps_what_it_queued_and_needs_a_password() -> None:
    command = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["redis"]["command"]
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert "REDIS_PASSWORD" in pairs["--requirepass"]


def test_compose_flower_asks_for_basic_auth() -> None:
    flower = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["flower"]
    assert any(part.startswith("--basic-auth=") for part in flower["command"])


def test_the_image_runs_as_a_user_under_an_init() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["tini", "--"]' in dockerfile


def test_every_kustomize_resource_exists_and_parses() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s_documents()}
    assert {
        ("Deployment", "worker"),
        ("Deployment", "flower"),
        ("StatefulSet", "redis"),
        ("Secret", "testgate"),
        ("NetworkPolicy", "worker-egress"),
        ("ScaledObject", "worker"),
    } <= kinds


def test_the_worker_pod_is_locked_down_probed_and_given_time_to_drain() -> None:
    spec = find("Deployment", "worker")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["terminationGracePeriodSeconds"] >= Settings().timeout_s + Settings().kill_grace_s
    [container] = spec["containers"]
    assert "inspect ping" in " ".join(container["livenessProbe"]["exec"]["command"])
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_workers_may_reach_only_redis_the_git_host_and_dns() -> None:
    policy = find("NetworkPolicy", "worker-egress")["spec"]
    assert policy["ingress"] == []
    targets = [peer for rule in policy["egress"] for peer in rule["to"]]
    assert {"podSelector": {"matchLabels": {"app": "redis"}}} in targets
    assert sum("ipBlock" in peer for peer in targets) == 1


def test_the_scaled_object_sums_every_priority_list_celery_uses() -> None:
    expected = {"tests" if step == 0 else f"tests{Channel.sep}{step}" for step in PRIORITY_STEPS}
    scaled = find("ScaledObject", "worker")["spec"]
    triggers = scaled["triggers"]
    assert {t["metadata"]["listName"] for t in triggers} == expected
    formula = scaled["advanced"]["scalingModifiers"]["formula"]
    assert set(re.findall(r"\w+", formula)) == {t["name"] for t in triggers}
    assert "+" in formula


def test_alert_rules_use_only_metrics_the_gate_exports() -> None:
    from worker.metrics import render_metrics

    exported = {
        line.split("{")[0].split(" ")[0]
        for line in render_metrics({}, 0, 0).splitlines()
        if not line.startswith("#")
    }
    exported |= {name.rsplit("_bucket", 1)[0] for name in exported}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "TestgateWorkersDown",
        "TestgateQueueBacklog",
        "TestgateToolErrorRatio",
        "TestgateFailClosed",
    } <= names
    for group in rules["groups"]:
        for rule in group["rules"]:
            used = set(re.findall(r"testgate_\w+", rule["expr"]))
            assert used and used <= exported, (rule["alert"], used - exported)
