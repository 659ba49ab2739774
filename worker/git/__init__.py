"""Git at the edge: one bounded command runner, per-job checkouts from a bare mirror,
and the diffs the second look reads. Nothing here decides a verdict."""
