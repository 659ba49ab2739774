"""One tester job, start to finish, callable without a broker: the runner and its steps
(the delivery protocol, the workspace, the suite step, and the outcome where PASS is
decided, through `worker.verdict`), the announce of advance or hand-back, the second
look, and the shards and merge of a sharded job."""
