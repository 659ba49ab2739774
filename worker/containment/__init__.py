"""Keeping the untrusted suite in its box: the sandbox's command line and limits, the
job's process tree and pids cgroup, the pool process as subreaper, and the warm
interpreter the suite is forked from (docs/contract.md §11)."""
