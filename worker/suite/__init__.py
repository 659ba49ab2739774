"""Running pytest on a checkout: preparing it (setup steps, cached venvs), the suite run
itself, the collect-only and re-run passes, and readers of what the suite leaves behind
(the in-suite probe's records and progress)."""
