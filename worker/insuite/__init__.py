"""Code that runs inside the suite's interpreter, not the worker's: the warm
interpreter (zygote), the cold start (boot) and the pytest plugins.

Its modules are started as scripts or loaded as pytest plugins by the suite's own
Python; they import nothing of the worker (only the standard library and pytest), so
nothing of testgate is in reach of the code under test. The worker only needs to know
where the files are.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGINS_DIR = HERE / "plugins"  # put on the suite's PYTHONPATH, loaded with `-p`
BOOT_SCRIPT = HERE / "boot.py"
# Names the prefix a job's own steps installed into (worker/suite/prepare.py); boot.py
# and zygote.py add its site dir once the suite's own code may run.
LAYER_VAR = "GATE_JOB_LAYER"
