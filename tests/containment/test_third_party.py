"""A suite run with the installed third-party pytest plugins (hypothesis, pytest-xdist,
execnet, pytest-timeout in the worker's venv) gets the same outcome per test forked
from the contained warm interpreter as started cold.

The suite is a reduction of the tests of more-itertools that once failed warm only
(ChunkedTests, OnlyTests, NumericRangeTests: `RuntimeError: invalid SRE code` in
re.compile): each compiles a pattern the interpreter has not compiled before. Real bwrap,
real pytest runs."""

from __future__ import annotations

from pathlib import Path

from tests.contained import outcomes
from tests.projects import project

REDUCTION = """
import re
from unittest import TestCase

from hypothesis import given, strategies as st


def chunked(iterable, n, strict=False):
    items = list(iterable)
    if n is not None and n < 1:
        raise ValueError("n must be at least one")
    if strict and len(items) % n:
        raise ValueError("iterable is not divisible by n.")
    return [items[i : i + n] for i in range(0, len(items), n)]


class ChunkedTests(TestCase):
    def test_negative(self):
        with self.assertRaisesRegex(ValueError, "n must be at least one"):
            chunked([1, 2, 3], -1)

    def test_strict_being_true(self):
        with self.assertRaisesRegex(ValueError, "iterable is not divisible by n."):
            chunked("ABCDE", 3, strict=True)


class OnlyTests(TestCase):
    def test_default_exception_message(self):
        self.assertRaisesRegex(
            ValueError,
            "Expected exactly one item in iterable, but got 'foo', 'bar', and perhaps more",
            lambda: (_ for _ in ()).throw(
                ValueError(
                    "Expected exactly one item in iterable, but got 'foo', 'bar', "
                    "and perhaps more."
                )
            ),
        )


class PatternTests(TestCase):
    def test_flags_and_literal_prefixes(self):
        self.assertTrue(re.compile("Maximum Count", re.IGNORECASE).match("maximum count!"))
        self.assertEqual(re.findall(r"ab(c|d)", "abc abd abe"), ["c", "d"])
        self.assertTrue(re.fullmatch(r"(?i)[a-z]+\\d{2,}", "Chunked42"))


@given(st.lists(st.integers(), max_size=20), st.integers(min_value=1, max_value=5))
def test_chunks_rejoin(items, n):
    assert sum(chunked(items, n), []) == items
"""


def test_the_same_outcome_per_test_warm_and_cold(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_reduction.py": REDUCTION})
    cold = outcomes(root, "cold")
    assert set(cold.values()) == {"passed"}, cold
    assert outcomes(root, "warm") == cold
