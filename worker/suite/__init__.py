"""Running pytest on a checkout: preparing it (setup steps, cached venvs), the suite run
itself, the collect-only and re-run passes, and readers of what the suite leaves behind
(JUnit XML, the in-suite probe and progress files)."""
