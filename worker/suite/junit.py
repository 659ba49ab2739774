"""Read pytest's JUnit XML into plain data (pure)."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

logger = logging.getLogger("testgate.junit")

MAX_XML_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class JunitSummary:
    tests: int
    failures: int
    errors: int
    skipped: int
    failing: tuple[str, ...]  # node ids like "tests/test_x.py::test_y", failures and errors


def parse_junit(xml: bytes) -> JunitSummary | None:
    """Sum every <testsuite>; None for empty, oversized or malformed XML."""
    if not xml.strip() or len(xml) > MAX_XML_BYTES:
        return None
    try:
        root = ET.fromstring(xml)  # noqa: S314 - pytest's own output; expat bounds entity expansion
    except ET.ParseError as exc:
        logger.warning("unreadable JUnit XML: %s", exc)
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    failing: dict[str, None] = {}
    for suite in suites:
        for case in suite.iter("testcase"):
            tests += 1
            if case.find("failure") is not None:
                failures += 1
                failing[node_id(case.get("classname", ""), case.get("name", ""))] = None
            elif case.find("error") is not None:
                errors += 1
                failing[node_id(case.get("classname", ""), case.get("name", ""))] = None
            elif case.find("skipped") is not None:
                skipped += 1
    return JunitSummary(tests, failures, errors, skipped, tuple(failing))


def node_id(classname: str, name: str) -> str:
    """pytest's node id from JUnit's dotted classname: "tests.test_x.TestK" + "test_y"
    -> "tests/test_x.py::TestK::test_y". Best effort: a capitalised component after
    the module is taken to be a class."""
    parts = [p for p in classname.split(".") if p]
    classes: list[str] = []
    while parts and parts[-1][:1].isupper() and len(parts) > 1:
        classes.insert(0, parts.pop())
    if not parts:
        return "::".join([*classes, name])
    module = "/".join(parts) + ".py"
    return "::".join([module, *classes, name])
