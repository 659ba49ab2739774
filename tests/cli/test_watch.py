from worker.cli.watch import render_bar


def test_the_bar_fills_with_the_share_of_tests_done() -> None:
    assert render_bar({"total": 10, "done": 5, "failed": 1}) == (
        "[" + "#" * 15 + "." * 15 + "] 5/10 tests, 1 failed"
    )
    assert render_bar({"total": 4, "done": 4, "failed": 0}).startswith("[" + "#" * 30 + "]")


def test_before_collection_the_bar_says_so() -> None:
    assert "collecting" in render_bar({"total": None, "done": 0, "failed": 0})
