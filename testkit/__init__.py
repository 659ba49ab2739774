"""What the tests and the benchmarks share: real workers and a stand-in orchestrator
(`fleet`), real git repositories (`repofactory`), loopback HTTP servers (`serving`) and
an OTLP trace receiver (`otlp`).

It drives the worker from outside, as a deployment would; the worker never imports it.
"""
