"""A whole job under containment forks its suite from the pool process's contained
warm interpreter, in the pool process's slot, and leaves the slot empty; the next job
sees nothing of it. Real git origins, real bwrap and pytest, no broker."""

from __future__ import annotations

import os
from pathlib import Path

from testkit.repofactory import OriginFactory
from tests.gateworld import WorldFactory, job
from tests.tools import required_tool
from worker.containment.slot import slot_path
from worker.containment.warm import stop_warm_pytest
from worker.pipeline.runner import run_gate

FIRST = {
    "tests/test_first.py": (
        "import os\n\n\n"
        "def test_forked_warm_in_the_slot():\n"
        "    assert os.getppid() == 2  # the contained zygote (a cold start's is 1)\n"
        f"    assert os.getcwd() == {str(Path('SLOT') / 'src')!r}\n"
        "    open('/tmp/left-by-first', 'w').write('x')\n"
        "    open(os.path.join(os.environ['HOME'], 'left-by-first'), 'w').write('x')\n"
    )
}
SECOND = {
    "tests/test_second.py": (
        "import os\n\n\n"
        "def test_sees_nothing_of_the_first():\n"
        "    assert os.getppid() == 2\n"
        "    assert not os.path.exists('/tmp/left-by-first')\n"
        "    assert not os.path.exists(os.path.join(os.environ['HOME'], 'left-by-first'))\n"
    )
}


def test_contained_jobs_fork_warm_in_the_slot_and_leave_nothing_behind(
    world: WorldFactory, origin: OriginFactory
) -> None:
    required_tool("bwrap", "bubblewrap")
    w = world({"first": {}, "second": {}}, containment="required")
    slot = slot_path(w.ctx.settings.workdir_path)
    first = {k: v.replace("SLOT", str(slot)) for k, v in FIRST.items()}
    origin("first", first)
    origin("second", SECOND)
    try:
        for n, repo in enumerate(("first", "second")):
            result = run_gate(job(repo), w.ctx, attempt=0, delivery_id=f"d{n}")
            assert result.kind == "advanced", result
            kwargs = w.sender.sent[n][1]
            assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass"), kwargs
            assert os.listdir(slot) == []
    finally:
        stop_warm_pytest()
