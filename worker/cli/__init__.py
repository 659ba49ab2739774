"""The `testgate` command: run the gate embedded, make a sample repo, start a worker,
enqueue, status and metrics, watch one job, and the end-to-end demo."""
