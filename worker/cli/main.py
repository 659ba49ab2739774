"""`testgate`: run the gate locally, make a sample repo, start a worker, show state."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from pathlib import Path

from worker import names
from worker.cli import tester_job
from worker.cli.sample import GREEN_BRANCH, RED_BRANCH, create_sample_repo


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testgate", description=__doc__)
    sub = parser.add_subparsers(title="commands")

    run = sub.add_parser(
        "run",
        help="run the full gate on a local git repository, embedded (no Redis, no orchestrator)",
    )
    run.add_argument("path", type=Path, help="the git repository (its branch gets the report)")
    run.add_argument("--branch", required=True, help="the feature branch to test")
    run.add_argument("--work-item", required=True, help="work item id (names the report dir)")
    run.add_argument("--commit", help="test exactly this commit (full name) instead of the tip")
    run.add_argument("--task-id", type=int, default=1, help="orchestrator task id (default 1)")
    run.add_argument("--target", default="tests/", help="pytest target (default tests/)")
    run.add_argument("--timeout", type=int, default=900, help="suite timeout in s (900)")
    run.add_argument("--smoke-url", default="", help="smoke this base URL after a green suite")
    run.add_argument(
        "--workdir", type=Path, help="mirrors and worktrees (default ~/.cache/testgate)"
    )
    run.add_argument(
        "--contracts",
        type=Path,
        help="a contracts file, as a worker reads it (default: TESTGATE_CONTRACTS_FILE)",
    )
    run.add_argument(
        "--repo", help="the repo's name in the contracts file (default: the path's name)"
    )
    run.add_argument(
        "--required-test",
        action="append",
        dest="required_tests",
        metavar="ID",
        help="a pytest node id that must pass (repeatable)",
    )
    run.add_argument(
        "--trusted-tests",
        action="store_true",
        help="judge with main's tests, conftests and pytest configuration (by merge base)",
    )
    run.add_argument(
        "--hidden-tests",
        type=Path,
        metavar="REPO",
        help="also run the tests under tests/ of this git repository's main",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(handler=_cmd_run)

    sample = sub.add_parser(
        "sample", help="create a sample repo with a passing and a failing branch"
    )
    sample.add_argument("path", type=Path)
    sample.set_defaults(handler=_cmd_sample)

    worker = sub.add_parser(
        "worker",
        help="start a Celery worker on the `tests` queue "
        "(same as: celery -A worker worker -Q tests)",
    )
    worker.add_argument(
        "celery_args", nargs=argparse.REMAINDER, help="extra arguments for celery worker, e.g. -c 4"
    )
    worker.set_defaults(handler=_cmd_worker)

    status = sub.add_parser(
        "status",
        help="settings, fleet counters, queue depth and workers online (from TESTGATE_* settings)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_cmd_status)

    enqueue = sub.add_parser(
        "enqueue", help="send one tester job to the `tests` queue, as an orchestrator would"
    )
    enqueue.add_argument("--task-id", type=int, required=True)
    enqueue.add_argument("--repo", required=True)
    enqueue.add_argument("--work-item", required=True)
    enqueue.add_argument("--branch", required=True)
    enqueue.add_argument("--commit", help="full commit name to test (default: the branch tip)")
    enqueue.set_defaults(handler=_cmd_enqueue)

    metrics = sub.add_parser(
        "metrics", help="serve Prometheus metrics of the fleet on http://HOST:PORT/metrics"
    )
    metrics.add_argument("--port", type=int, default=9808)
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on")
    metrics.set_defaults(handler=_cmd_metrics)

    watch = sub.add_parser(
        "watch", help="a live progress bar for one job (its Celery task id, as enqueue prints)"
    )
    watch.add_argument("task_id")
    watch.add_argument("--timeout", type=float, default=3600, help="give up after (s)")
    watch.set_defaults(handler=_cmd_watch)

    demo = sub.add_parser(
        "demo",
        help="a reference orchestrator (SQLite stage engine) and a "
        "testgate fleet, three tasks end to end",
    )
    demo.add_argument(
        "--broker",
        help="use a real broker and fleet instead of the embedded "
        "one (the fleet must read repos from <workdir>/repos/{repo})",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        help="where repos, worktrees and the SQLite database go (default: a temporary directory)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from worker.cli.embedded import quiet_celery_logs, run_embedded
    from worker.containment.subreaper import become_subreaper
    from worker.errors import ContractsFileError
    from worker.git.command import read_at_ref
    from worker.observe import configure_tracing, shutdown_tracing

    _log_in_order(logging.DEBUG if args.verbose else logging.INFO)
    quiet_celery_logs()
    # As a worker's pool process is (worker.celery_adapter.app): what the suite daemonises is
    # re-parented to this process instead of PID 1, and killed when the suite ends.
    become_subreaper()
    # The OTEL_* variables trace this run as they trace a worker's pool process.
    configure_tracing(os.environ, service_name="testgate-run")
    try:
        run = run_embedded(
            args.path,
            branch=args.branch,
            work_item_id=args.work_item,
            commit=args.commit,
            task_id=args.task_id,
            target=args.target,
            timeout_s=args.timeout,
            smoke_url=args.smoke_url,
            workdir=args.workdir,
            contracts_file=args.contracts,
            repo=args.repo,
            required_tests=args.required_tests,
            trusted_tests=args.trusted_tests,
            hidden_tests=args.hidden_tests,
        )
    except ContractsFileError as exc:
        print(f"testgate: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_tracing()
    print(f"\noutcome: {run.summary.get('kind')} - {run.summary.get('detail')}")
    for name, kwargs in run.events:
        print(f"event on the orchestrator queue: {name}({json.dumps(kwargs, sort_keys=True)})")
    advance = run.summary.get("advance") or {}
    if advance:
        where = "pushed to" if advance.get("report_pushed") else "NOT pushed to"
        print(f"report: {advance['report_path']} {where} branch {args.branch} of {args.path}")
        report = read_at_ref(args.path, f"refs/heads/{args.branch}", advance["report_path"])
        if report:
            # The whole report but pytest's output, which the log above already showed.
            print("\n" + report.split("\n## Output")[0].rstrip())
        print(f"\nverdict: {advance['result']}")
    print(f"counters: {json.dumps(run.counters, sort_keys=True)}")
    if run.summary.get("kind") != "advanced":
        return 2
    return 0 if advance.get("result") == "PASS" else 1


def _cmd_sample(args: argparse.Namespace) -> int:
    path = create_sample_repo(args.path)
    print(f"sample repository: {path}")
    print(f"  {GREEN_BRANCH}: its tests pass")
    print(f"  {RED_BRANCH}: one test fails")
    print(f"try: testgate run {path} --branch {GREEN_BRANCH} --work-item WI-1")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    extra = [a for a in args.celery_args if a != "--"]
    argv = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", names.TESTS_QUEUE]
    os.execv(sys.executable, [*argv, *extra])  # noqa: S606 - replaces this process with the worker
    return 0  # pragma: no cover


def _cmd_status(args: argparse.Namespace) -> int:
    from worker.cli.status import fleet_status

    status = fleet_status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    width = max(len(key) for key in status)
    for key, value in status.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_enqueue(args: argparse.Namespace) -> int:
    from worker.client import enqueue
    from worker.errors import InvalidJob

    job = tester_job(args.task_id, args.repo, args.work_item, args.branch, args.commit)
    try:
        print(enqueue(job))
    except InvalidJob as exc:
        print(f"testgate: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from worker.cli.status import metrics_text
    from worker.metrics import serve_metrics

    server = serve_metrics(args.port, metrics_text, host=args.host)
    print(f"serving http://{args.host}:{server.server_address[1]}/metrics", flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        server.serve_forever()
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from worker.celery_adapter.app import app
    from worker.cli.watch import watch

    state = watch(args.task_id, app, sys.stdout, timeout_s=args.timeout)
    return 0 if state == "SUCCESS" else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from worker.cli.demo import FINAL_STAGES, run_demo

    _log_in_order(logging.WARNING)
    rows = run_demo(broker=args.broker, workdir=args.workdir)
    return 0 if all(row.stage in FINAL_STAGES for row in rows) else 1


def _log_in_order(level: int) -> None:
    """Log to stderr, and keep our lines in order with the log lines, also when piped."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(level=level, format="  %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
