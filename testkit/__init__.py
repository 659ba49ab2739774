"""Support for the tests and the benchmarks: what drives and watches a worker from
outside, as a deployment would. Real workers and a stand-in orchestrator (`fleet`), real
git origins (`repofactory`), loopback HTTP servers (`serving`) and an OTLP trace
receiver (`otlp`).

The worker never imports it, and it imports nothing of `tests` or `bench`
(tests/test_layering.py checks both).
"""
