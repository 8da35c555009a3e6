"""Leaderboard columns from per-category accuracies, with the official aggregation helpers
(``bfcl_eval.eval_checker.eval_runner_helper.calculate_*``).

BFCL v3 (the paper's Table 1): Non-Live AST = unweighted mean of simple (itself the mean
of python/java/javascript), multiple, parallel, parallel_multiple; Live = the
size-weighted mean of the six live categories (relevance and irrelevance included);
Multi-Turn = unweighted mean of the four multi-turn categories; Relevance =
live_relevance; Irrelevance = mean of irrelevance and live_irrelevance; Overall =
unweighted mean of the non-live overall (the four AST groups plus irrelevance), Live and
Multi-Turn. This composition is the one in BFCL v3's eval_runner_helper; the installed
v4 wheel composes v4's columns, reproduced in :func:`v4_columns` (its Overall also needs
the agentic categories, which we do not run).

A category that was not run counts 0 in the composite columns, as upstream does, and
shows as N/A on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from looptool.eval.bfcl import official
from looptool.eval.bfcl.data import ALL_CATEGORIES, MULTI_TURN_CATEGORIES

V3_COLUMNS: tuple[str, ...] = (
    "Overall", "Non-Live AST", "Live", "Multi-Turn", "Relevance", "Irrelevance",
)  # fmt: skip
V4_COLUMNS: tuple[str, ...] = ("Non-Live", "Live", "Irrelevance", "Multi-Turn", "Overall")
AGENTIC_CATEGORIES: tuple[str, ...] = (
    "web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum",
)  # fmt: skip


@cache
def category_size(category: str) -> int:
    """Entries of a category in the installed bfcl-eval data (weights a category not run)."""
    path = official.data_dir() / f"BFCL_v4_{category}.json"
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _score(counts: Mapping[str, tuple[int, int]], category: str) -> dict:
    if category in counts and counts[category][1] > 0:
        correct, total = counts[category]
        acc = correct / total
        return {"accuracy": acc, "total_count": total, "display_accuracy": acc}
    return {"accuracy": 0, "total_count": category_size(category), "display_accuracy": "N/A"}


def _helpers():
    return official.module("eval_checker.eval_runner_helper")


def v3_columns(counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
    """Table 1 columns from {category: (correct, total)}; None where upstream shows N/A."""
    h = _helpers()
    s = {c: _score(counts, c) for c in _all_categories()}
    simple = h.calculate_unweighted_accuracy(
        [s["simple_python"], s["simple_java"], s["simple_javascript"]]
    )
    ast_groups = [simple, s["multiple"], s["parallel"], s["parallel_multiple"]]
    non_live_ast = h.calculate_unweighted_accuracy(ast_groups)
    non_live_overall = h.calculate_unweighted_accuracy(
        [*ast_groups, s["irrelevance"]], display_na_if_category_missing=False
    )
    live = h.calculate_weighted_accuracy(
        [s[c] for c in ("live_simple", "live_multiple", "live_parallel",
                        "live_parallel_multiple", "live_irrelevance", "live_relevance")],
        display_na_if_category_missing=False,
    )  # fmt: skip
    multi_turn = h.calculate_unweighted_accuracy(
        [s[c] for c in MULTI_TURN_CATEGORIES], display_na_if_category_missing=False
    )
    irrelevance = h.calculate_unweighted_accuracy([s["irrelevance"], s["live_irrelevance"]])
    overall = h.calculate_unweighted_accuracy(
        [live, non_live_overall, multi_turn], display_na_if_category_missing=False
    )
    cols = (overall, non_live_ast, live, multi_turn, s["live_relevance"], irrelevance)
    return {name: _display(c) for name, c in zip(V3_COLUMNS, cols, strict=True)}


def v4_columns(counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
    """BFCL v4's summary columns, composed as the installed eval_runner_helper does."""
    h = _helpers()
    s = {c: _score(counts, c) for c in (*_all_categories(), *AGENTIC_CATEGORIES)}
    simple = h.calculate_unweighted_accuracy(
        [s["simple_python"], s["simple_java"], s["simple_javascript"]]
    )
    non_live = h.calculate_unweighted_accuracy(
        [simple, s["multiple"], s["parallel"], s["parallel_multiple"]],
        display_na_if_category_missing=False,
    )
    live = h.calculate_weighted_accuracy(
        [s[c] for c in ("live_simple", "live_multiple", "live_parallel",
                        "live_parallel_multiple")],
        display_na_if_category_missing=False,
    )  # fmt: skip
    irrelevance = h.calculate_unweighted_accuracy([s["irrelevance"], s["live_irrelevance"]])
    multi_turn = h.calculate_unweighted_accuracy(
        [s[c] for c in MULTI_TURN_CATEGORIES], display_na_if_category_missing=False
    )
    web = h.calculate_unweighted_accuracy([s["web_search_base"], s["web_search_no_snippet"]])
    memory = h.calculate_unweighted_accuracy(
        [s["memory_kv"], s["memory_vector"], s["memory_rec_sum"]]
    )
    agentic = h.calculate_unweighted_accuracy([web, memory])
    # upstream weights; with the agentic categories not run the total shows N/A
    overall = h.calculate_percentage_weighted_accuracy(
        [non_live, live, irrelevance, multi_turn, agentic], [10, 10, 10, 30, 40]
    )
    cols = (non_live, live, irrelevance, multi_turn, overall)
    return {name: _display(c) for name, c in zip(V4_COLUMNS, cols, strict=True)}


def _display(score: dict) -> float | None:
    d = score["display_accuracy"]
    return None if d == "N/A" else float(d)


def _all_categories() -> tuple[str, ...]:
    return (*ALL_CATEGORIES, *MULTI_TURN_CATEGORIES)


def format_table(counts: Mapping[str, tuple[int, int]]) -> str:
    """Table 1 (v3) and v4 columns, per-category accuracy, and the bfcl-eval version."""

    def pct(v: float | None) -> str:
        return "N/A" if v is None else f"{100 * v:.2f}"

    v3, v4 = v3_columns(counts), v4_columns(counts)
    lines = [f"BFCL scores (official aggregation, bfcl-eval {official.version()})"]
    lines.append("v3 (Table 1): " + "  ".join(f"{k} {pct(v)}" for k, v in v3.items()))
    lines.append("v4:           " + "  ".join(f"{k} {pct(v)}" for k, v in v4.items()))
    missing = [c for c in _all_categories() if c not in counts]
    if missing:
        lines.append(f"not run (count 0 in composites, upstream rule): {', '.join(missing)}")
    lines.append(f"{'category':<26} {'n':>5} {'correct':>8} {'accuracy':>9}")
    for c in _all_categories():
        if c in counts:
            ok, n = counts[c]
            lines.append(f"{c:<26} {n:>5} {ok:>8} {pct(ok / n if n else None):>9}")
    return "\n".join(lines)
