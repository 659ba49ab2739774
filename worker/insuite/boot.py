"""Start `python -m pytest` cold, after telling the worker that the interpreter is up.

Run as a script (`python boot.py ARGS...`) by a cold start; it imports nothing of the
worker (stdlib only). Before any code of the suite runs, it writes one byte to the pipe
named by GATE_STARTED_FD and closes it: from then on the run counts as started, so
whatever the suite does next (exit 126, kill itself, kill its parent) is the suite's
outcome, never "could not start". Then it becomes exactly what `python -m pytest ARGS`
would be: sys.path[0] is the working directory and pytest's __main__ runs as __main__.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import site
import sys


def _announce_start() -> None:
    fd_text = os.environ.pop("GATE_STARTED_FD", "")
    if not fd_text.isdigit():
        return
    fd = int(fd_text)
    with contextlib.suppress(OSError):  # no pipe: the worker then sees no start, and says so
        os.write(fd, b"1")
    with contextlib.suppress(OSError):  # closed already
        os.close(fd)


def _load_the_gates_modules() -> None:
    """pytest and the gate's plugins, imported before the working directory goes on sys.path:
    a `pytest/` or `testgate_probe.py` the branch ships cannot stand in for them (a real
    `python -m pytest` would import the branch's copy first). The probe takes its nonce now,
    before any code of the suite can; its `-p` then finds it imported."""
    importlib.import_module("pytest")
    importlib.import_module("testgate_probe")


def add_job_layer() -> None:
    """The site dirs of what the job's own setup steps installed, processed as the
    venv's own are (an editable install's `.pth` works), after the gate's modules."""
    if prefix := os.environ.pop("GATE_JOB_LAYER", ""):
        import sysconfig  # not before: pytest's start-up does without it (~0.6 ms)

        paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})
        for path in dict.fromkeys((paths["purelib"], paths["platlib"])):
            site.addsitedir(path)


def main() -> None:
    _announce_start()
    _load_the_gates_modules()
    sys.path[0] = os.getcwd()  # `python -m` puts the working directory first, not ours
    add_job_layer()
    sys.argv = ["-m", *sys.argv[1:]]
    sys.orig_argv = [sys.orig_argv[0], "-m", "pytest", *sys.argv[1:]]  # not boot.py's
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
