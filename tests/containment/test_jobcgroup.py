"""Finding the pids cgroup to put jobs in: pure parsing of /proc/self/{mountinfo,cgroup}."""

from __future__ import annotations

from pathlib import Path

from worker.containment.cgroup import PidsHierarchy, find_pids_hierarchy

V1_MOUNTS = (
    "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
)
V1_CGROUP = "8:pids:/kubepods/pod1\n4:memory:/kubepods/pod1\n0::/\n"


def test_cgroup_v1_pids_is_found_under_the_processes_own_path() -> None:
    found = find_pids_hierarchy(V1_MOUNTS, V1_CGROUP)
    assert found == PidsHierarchy(Path("/sys/fs/cgroup/pids/kubepods/pod1"), 1)


def test_cgroup_v2_is_used_only_where_the_pids_controller_is_offered(tmp_path: Path) -> None:
    mounts = "40 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
    own = tmp_path / "sys/fs/cgroup/user.slice/session-1"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory\n")
    assert find_pids_hierarchy(mounts, "0::/user.slice/session-1\n", tmp_path) is None
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    found = find_pids_hierarchy(mounts, "0::/user.slice/session-1\n", tmp_path)
    assert found == PidsHierarchy(own, 2)


def test_no_pids_controller_anywhere_means_no_cgroup() -> None:
    mounts = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    assert find_pids_hierarchy(mounts, "4:memory:/\n") is None
    assert find_pids_hierarchy("", "") is None
