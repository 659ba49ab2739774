"""The opt-in second look at a suite that ran (pure): the test-integrity guard, the
classification of failures, the failure packet, and what a test file's source says."""
