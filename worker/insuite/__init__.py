"""Code that runs inside the suite's interpreter, not the worker's.

Its modules are started as scripts or loaded as pytest plugins by the suite's own
Python; they import nothing of the worker (only the standard library and pytest), so
that nothing of testgate is in reach of the code under test.
"""
