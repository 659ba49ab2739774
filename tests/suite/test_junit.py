from worker.suite.junit import node_id, parse_junit

XML = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.test_a" name="test_ok" time="0.001"/>
<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2"/></testcase>
<testcase classname="tests.test_b.TestThing" name="test_x[1-2]"><error message="boom"/></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="no"/></testcase>
<testcase classname="tests.test_a" name="test_bad"><failure message="again"/></testcase>
</testsuite></testsuites>"""


def test_counts_and_failing_node_ids_are_read() -> None:
    summary = parse_junit(XML)
    assert summary is not None
    assert (summary.tests, summary.failures, summary.errors, summary.skipped) == (5, 2, 1, 1)
    assert summary.failing == (
        "tests/test_a.py::test_bad",
        "tests/test_b.py::TestThing::test_x[1-2]",
    )


def test_a_bare_testsuite_root_is_read_too() -> None:
    xml = (
        b'<testsuite tests="1"><testcase classname="t" name="test_y"><failure/></testcase>'
        b"</testsuite>"
    )
    summary = parse_junit(xml)
    assert summary is not None and summary.failing == ("t.py::test_y",)


def test_malformed_or_empty_xml_is_none() -> None:
    assert parse_junit(b"") is None
    assert parse_junit(b"<testsuites><testsuite>") is None


def test_node_ids_keep_nested_classes() -> None:
    assert node_id("pkg.tests.test_m.TestOuter.TestInner", "test_z") == (
        "pkg/tests/test_m.py::TestOuter::TestInner::test_z"
    )
    assert node_id("", "test_q") == "test_q"
