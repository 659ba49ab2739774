"""Code that runs inside the suite's interpreter, not the worker's: the warm
interpreter (zygote), the cold start (boot) and the pytest plugins. None of it imports
anything of the worker; the worker only needs to know where the files are."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGINS_DIR = HERE / "plugins"  # put on the suite's PYTHONPATH, loaded with `-p`
BOOT_SCRIPT = HERE / "boot.py"
ZYGOTE_SCRIPT = HERE / "zygote.py"
