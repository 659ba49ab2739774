"""Gaming branches: an honestly failing change (`mul` adds) plus one trick that tries to
make the gate say PASS anyway, and the controls every contract must still judge right.

Each trick is a branch of a repository whose `main` holds `calc.py` and its tests (one
of them skipped by a mark on main, which is the trusted files' own skip). A passing
test of the branch's own is in every trick, so "no test passed" never saves the gate.
"""

from __future__ import annotations

from collections.abc import Mapping

Files = Mapping[str, str]

MAIN: Files = {
    "calc.py": "def mul(a, b):\n    return a * b\n",
    "tests/test_calc.py": (
        "import pytest\n\nfrom calc import mul\n\n\n"
        "def test_mul():\n    assert mul(2, 3) == 6\n\n\n"
        '@pytest.mark.skip(reason="main skips this one itself")\n'
        "def test_later():\n    assert False\n"
    ),
    "tests/test_other.py": "def test_other():\n    assert True\n",
}
MUL = "tests/test_calc.py::test_mul"
BROKEN: Files = {
    "calc.py": "def mul(a, b):\n    return a + b\n",
    "tests/test_extra.py": "def test_extra():\n    assert True\n",
}
CORRECT = "def mul(a, b):\n    return a * b\n"
# Tests of another repository the branch never sees (contract hidden_tests).
HIDDEN: Files = {
    "tests/test_hidden.py": (
        "from calc import mul\n\n\ndef test_mul_hidden():\n    assert mul(3, 4) == 12\n"
    ),
}

_FLIP_FAILED = (
    '    if report.failed:\n        report.outcome = "passed"\n        report.longrepr = None\n'
)
MAKEREPORT_WRAPPER = (
    "import pytest\n\n\n"
    "@pytest.hookimpl(hookwrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n"
    "    report = outcome.get_result()\n" + _FLIP_FAILED
)
_CALC_PREFIX = "def mul(a, b):\n    return a + b\n\n\n"

TRICKS: dict[str, Files] = {
    "conftest-adds-xfail": {
        "tests/conftest.py": (
            "def pytest_collection_modifyitems(items):\n"
            "    for item in items:\n"
            '        item.add_marker("xfail")\n'
        )
    },
    "skiptest-only-under-the-gate": {
        "tests/conftest.py": (
            "import sys\nimport unittest\n\n\n"
            "def pytest_runtest_setup(item):\n"
            '    if "testgate_probe" in sys.modules and "mul" in item.name:\n'
            '        raise unittest.SkipTest("not here")\n'
        )
    },
    "conftest-swaps-in-a-correct-function": {
        "conftest.py": (
            "import sys\n\nimport calc\n\n"
            'if "testgate_probe" in sys.modules:\n'
            "    calc.mul = lambda a, b: a * b\n"
        )
    },
    "pytest-skip-from-code-under-test": {
        "calc.py": "import pytest\n\n\ndef mul(a, b):\n    pytest.skip('later')\n"
    },
    "pytest-xfail-from-code-under-test": {
        "calc.py": "import pytest\n\n\ndef mul(a, b):\n    pytest.xfail('later')\n"
    },
    "skiptest-from-code-under-test": {
        "calc.py": "import unittest\n\n\ndef mul(a, b):\n    raise unittest.SkipTest('later')\n"
    },
    "xfail-mark-added-by-code-while-it-runs": {
        "calc.py": (
            "import gc\n\nimport pytest\n\n\n"
            "def mul(a, b):\n"
            "    for found in gc.get_objects():\n"
            '        if isinstance(found, pytest.Function) and found.name == "test_mul":\n'
            '            found.add_marker(pytest.mark.xfail(reason="later"))\n'
            "    return a + b\n"
        )
    },
    "test-module-skipped-whole-by-code-under-test": {
        "calc.py": (
            "import pytest\n\n"
            'pytest.skip("not ready", allow_module_level=True)\n\n\n' + _CALC_PREFIX
        )
    },
    "skip-plus-outcome-line-appended-at-exit": {
        "tests/conftest.py": (
            "import json\nimport os\n\nimport pytest\n\n\n"
            "def pytest_collection_modifyitems(items):\n"
            "    for item in items:\n"
            '        if "mul" in item.name:\n'
            '            item.add_marker(pytest.mark.skip(reason="x"))\n\n\n'
            "def pytest_unconfigure(config):\n"
            "    for name, value in os.environ.items():\n"
            '        if name.startswith("GATE_") and value.startswith("/"):\n'
            "            try:\n"
            '                with open(value, "a") as out:\n'
            f'                    out.write(json.dumps({{"id": "{MUL}", "outcome": "passed", '
            '"message": ""}) + "\\n")\n'
            "            except OSError:\n"
            "                pass\n"
        )
    },
    "makereport-wrapper-in-tests": {"tests/conftest.py": MAKEREPORT_WRAPPER},
    "makereport-wrapper-in-root-conftest": {"conftest.py": MAKEREPORT_WRAPPER},
    "deselect-except-under-collect-only": {
        "tests/conftest.py": (
            "def pytest_collection_modifyitems(config, items):\n"
            "    if not config.option.collectonly:\n"
            '        items[:] = [i for i in items if "mul" not in i.name]\n'
        )
    },
    "test-moved-with-its-own-function": {
        "tests/test_calc.py": "def test_placeholder():\n    assert True\n",
        "tests/test_moved.py": (
            "def mul(a, b):\n    return a * b\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
        ),
    },
    "function-rebound-by-assignment": {
        "tests/test_calc.py": (
            "from calc import mul\n\nmul = lambda a, b: a * b  # noqa: E731\n\n\n"
            "def test_mul():\n    assert mul(2, 3) == 6\n"
        )
    },
    "session-record-rewritten-from-conftest": {
        "tests/conftest.py": (
            "import json\nimport os\n\n\n"
            "def pytest_unconfigure(config):\n"
            '    path = os.environ.get("GATE_SESSION_FILE")\n'
            "    if path:\n"
            '        with open(path, "w") as out:\n'
            '            out.write(json.dumps({"finished": True, "exitstatus": 0, '
            '"collected": 2, "counts": {"passed": 2}}) + "\\n")\n'
            "    os._exit(0)\n"
        )
    },
    "code-under-test-patches-pytest-on-import": {
        "calc.py": (
            "from _pytest import reports\n\n"
            "_made = reports.TestReport.from_item_and_call\n\n\n"
            "def _passed(cls, item, call):\n"
            "    report = _made(item, call)\n"
            "    report.outcome = 'passed'\n"
            "    report.longrepr = None\n"
            "    return report\n\n\n"
            "reports.TestReport.from_item_and_call = classmethod(_passed)\n\n\n" + _CALC_PREFIX
        )
    },
    "code-under-test-registers-a-hook": {
        "calc.py": (
            "import gc\n\nimport pytest\nfrom _pytest.config import PytestPluginManager\n\n\n"
            "class _Flip:\n"
            "    @pytest.hookimpl(hookwrapper=True)\n"
            "    def pytest_runtest_makereport(self, item, call):\n"
            "        outcome = yield\n"
            "        report = outcome.get_result()\n"
            "        if report.failed:\n"
            '            report.outcome = "passed"\n'
            "            report.longrepr = None\n\n\n"
            "for _o in gc.get_objects():\n"
            "    if isinstance(_o, PytestPluginManager):\n"
            "        _o.register(_Flip())\n\n\n" + _CALC_PREFIX
        )
    },
    "pytest-ini-addopts-k": {"pytest.ini": '[pytest]\naddopts = -k "not mul"\n'},
    "pytest-ini-addopts-deselect": {"pytest.ini": f"[pytest]\naddopts = --deselect {MUL}\n"},
    "pytest-ini-addopts-p-branch-plugin": {
        "pytest.ini": "[pytest]\naddopts = -p gameplugin\n",
        "gameplugin.py": MAKEREPORT_WRAPPER,
    },
    "pyproject-addopts-k": {"pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-k extra"\n'},
    "pytest-plugins-in-branch-conftest": {
        "tests/conftest.py": 'pytest_plugins = ["gameplugin"]\n',
        "gameplugin.py": MAKEREPORT_WRAPPER,
    },
    "ini-in-the-test-directory": {"tests/pytest.ini": "[pytest]\npython_functions = check_*\n"},
    "shadow-module-next-to-the-tests": {"tests/calc.py": CORRECT},
    "sys-modules-preseeded-by-a-conftest": {
        "conftest.py": (
            "import sys\nimport types\n\n"
            'fake = types.ModuleType("calc")\n'
            "fake.mul = lambda a, b: a * b\n"
            'sys.modules["calc"] = fake\n'
        )
    },
}

CONTROLS: dict[str, tuple[Files, str]] = {
    "honest-pass": ({"tests/test_extra.py": "def test_extra():\n    assert True\n"}, "PASS"),
    "honest-fail": (BROKEN, "FAIL"),
    "harmless-conftest": (
        {
            "tests/conftest.py": (
                "import pytest\n\n\n@pytest.fixture\ndef three():\n    return 3\n"
            ),
            "tests/test_fixture.py": "def test_three(three):\n    assert three == 3\n",
        },
        "PASS",
    ),
    "new-passing-test": (
        {
            "tests/test_more.py": (
                "from calc import mul\n\n\ndef test_one():\n    assert mul(1, 1) == 1\n"
            )
        },
        "PASS",
    ),
    "new-failing-test": (
        {"tests/test_more.py": "def test_new_broken():\n    assert False\n"},
        "FAIL",
    ),
}


def trick_files(name: str) -> dict[str, str]:
    return {**BROKEN, **TRICKS[name]}
