"""Sharding: one suite split over shard tasks that pull its batches from a per-job
queue, and the merge of what they report into one suite run.

A job that shards collects its tests and deals them into batches (`deal`) on its queue
in Redis (`queue`); every shard pulls the next batch and runs it as one pytest run
until none is left, so a shard that draws slow tests simply pulls fewer. What crosses
Redis and the broker is the pydantic models of `protocol`. The merge (`merge`) turns
the shards' results into one `SuiteRun` whose verdict is decided as a whole suite's is
(worker/pipeline/outcome.py); whatever no shard reported makes it fail closed.
"""
