"""What a suite's interpreter looks like from inside, dumped so that a warm start can be
compared with a cold one field by field (test_warm.py, test_warm_contained.py)."""

from __future__ import annotations

import re

STATE_DUMP = """\
import gc, json, os, resource, sys, tempfile


class Cycle:
    collected = []

    def __del__(self):
        Cycle.collected.append(True)


def test_dump_the_interpreter():
    out = os.environ["DUMP_TO"]
    cookie = ("GATE_JOB_COOKIE=" + os.environ["GATE_JOB_COOKIE"]).encode()
    proc_environ = open("/proc/self/environ", "rb").read().split(b"\\0")
    cycle = Cycle()
    cycle.me = cycle
    own = id(cycle)
    listed = any(id(o) == own for o in gc.get_objects())
    del cycle
    gc.collect()
    with open(out, "w") as f:
        json.dump({
            "argv": sys.argv,
            "path": sys.path,
            "main": sys.modules["__main__"].__file__,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "flags": list(sys.flags),
            "dont_write_bytecode": sys.dont_write_bytecode,
            "tempdir": tempfile.gettempdir(),
            "own_session": os.getsid(0) == os.getpid(),
            "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
            "cookie_in_proc": cookie in proc_environ,
            "stdin": os.readlink("/proc/self/fd/0"),
            "site_ran": os.environ.get("SITE_RAN", ""),
            "ppid": os.getppid(),
            # The suite's own objects, as the collector sees them.
            "gc": [gc.isenabled(), gc.get_threshold(), listed, Cycle.collected],
            "gc_frozen": gc.get_freeze_count(),
        }, f)
"""


RUN_DIR = re.compile(r"/run-[^/]+/")


def per_run_dirs_named_alike(env: dict[str, str]) -> dict[str, str]:
    return {key: RUN_DIR.sub("/run-*/", value) for key, value in env.items()}
