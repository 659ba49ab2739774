"""Resource limits of a job's processes: one table serves prlimit's options (a cold
start) and setrlimit (a warm start sets them on itself)."""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Resource limits of the command's processes (inherited by its children); 0 means
    none. `max_processes` counts every process of the user (RLIMIT_NPROC)."""

    max_memory_mb: int = 0  # address space per process
    max_file_mb: int = 0  # largest file a process may write, its output log included
    max_processes: int = 0

    def prefix(self) -> list[str]:
        """`prlimit` with these limits, to put before the command ([] when unlimited):
        a wrapper that execs the command, since with a pre-exec hook Python must fork
        the whole worker instead of using vfork, ~60 ms more per job."""
        options = [f"--{option}={value}" for option, _, value in self._set()]
        return ["prlimit", *options, "--"] if options else []

    def rlimits(self) -> tuple[tuple[int, int], ...]:
        """The same limits as (resource, value) pairs, for a process to set on itself."""
        return tuple((limit, value) for _, limit, value in self._set())

    def _set(self) -> list[tuple[str, int, int]]:
        """(prlimit option, resource, value) of each limit that is set."""
        mib = 1024 * 1024
        limits = (
            ("as", resource.RLIMIT_AS, self.max_memory_mb * mib),
            ("fsize", resource.RLIMIT_FSIZE, self.max_file_mb * mib),
            ("nproc", resource.RLIMIT_NPROC, self.max_processes),
        )
        return [limit for limit in limits if limit[2] > 0]
