"""Leaderboard columns from per-category counts (official aggregation helpers)."""

from __future__ import annotations

import pytest

pytest.importorskip("bfcl_eval")
from looptool.eval.bfcl.scores import format_table, v3_columns, v4_columns  # noqa: E402

COUNTS = {
    "simple_python": (1, 2), "simple_java": (1, 1), "simple_javascript": (0, 1),
    "multiple": (1, 4), "parallel": (2, 2), "parallel_multiple": (0, 2), "irrelevance": (3, 4),
    "live_simple": (1, 2), "live_multiple": (0, 2), "live_parallel": (1, 1),
    "live_parallel_multiple": (0, 1), "live_irrelevance": (1, 2), "live_relevance": (1, 1),
    "multi_turn_base": (1, 2), "multi_turn_miss_func": (0, 1), "multi_turn_miss_param": (1, 1),
    "multi_turn_long_context": (0, 1),
}  # fmt: skip


def test_v3_table1_columns_composed_as_bfcl_v3() -> None:
    simple = (0.5 + 1 + 0) / 3
    non_live_ast = (simple + 0.25 + 1 + 0) / 4
    non_live_overall = (simple + 0.25 + 1 + 0 + 0.75) / 5
    live = (1 + 0 + 1 + 0 + 1 + 1) / (2 + 2 + 1 + 1 + 2 + 1)  # size-weighted, rel/irrel in
    multi = (0.5 + 0 + 1 + 0) / 4
    assert v3_columns(COUNTS) == pytest.approx(
        {
            "Overall": (live + non_live_overall + multi) / 3,
            "Non-Live AST": non_live_ast,
            "Live": live,
            "Multi-Turn": multi,
            "Relevance": 1.0,
            "Irrelevance": (0.75 + 0.5) / 2,
        }
    )


def test_v4_columns_and_missing_categories() -> None:
    v4 = v4_columns(COUNTS)
    assert v4["Live"] == pytest.approx(2 / 6) and v4["Multi-Turn"] == pytest.approx(0.375)
    assert v4["Overall"] is None  # the agentic categories are not run
    partial = {"simple_python": (1, 1), "multi_turn_base": (1, 1)}
    v3 = v3_columns(partial)
    assert v3["Non-Live AST"] is None and v3["Relevance"] is None  # not run: N/A
    # composites count what was not run as 0, as upstream: (0 live + 0.25 + 0.25) / 3
    assert v3["Overall"] == pytest.approx((0 + (1 / 3) / 5 + 0.25) / 3)
    text = format_table(partial)
    assert "bfcl-eval 2026.3.23" in text and "not run" in text and "multi_turn_base" in text
