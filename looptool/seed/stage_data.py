"""Plain data helpers of the seed stages (:mod:`looptool.seed.pipeline`).

A stage's input table read as rows, and the counts the stages write into their metrics
files: rejects by tier and by reason class (numbers and quoted values stripped), planner
outcomes by reject class, samples by kind. Counts only, so a rerun reproduces the
metrics byte for byte.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import polars as pl

from looptool.seed.plan import reject_class
from looptool.store.io import read_parquet


def read_rows(path: Path) -> list[dict]:
    return read_parquet(path).to_pylist()


def reject_counts(rejects: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["tier"] for r in rejects).items()))


_QUOTED = r"'[^']*'|\"[^\"]*\""


def top_reasons(rejects: list[dict], n: int = 8) -> dict[str, int]:
    """Most frequent reasons with numbers and quoted values stripped (reason classes)."""

    def cls(reason: str) -> str:
        first = reason.split("; ")[0]
        first = re.sub(_QUOTED, "'…'", first)
        return re.sub(r"\d+", "N", first)[:120]

    counts = Counter(cls(r["reason"]) for r in rejects)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def reject_summary(path: Path, n: int = 8) -> tuple[dict[str, int], dict[str, int]]:
    """(:func:`reject_counts`, :func:`top_reasons`) of a REJECTS parquet file, counted
    by Polars' streaming engine (the rows are never held whole)."""
    lf = pl.scan_parquet(path)
    tiers = lf.group_by("tier").len().sort("tier").collect(engine="streaming")
    cls = (
        pl.col("reason")
        .str.split("; ")
        .list.first()
        .str.replace_all(_QUOTED, "'…'")
        .str.replace_all(r"\d+", "N")
        .str.slice(0, 120)
        .alias("cls")
    )
    top = (
        lf.select(cls)
        .group_by("cls")
        .len()
        .sort(["len", "cls"], descending=[True, False])
        .head(n)
        .collect(engine="streaming")
    )
    return {k: int(c) for k, c in tiers.iter_rows()}, {k: int(c) for k, c in top.iter_rows()}


def value_counts(path: Path, column: str) -> dict[str, int]:
    """Rows per value of ``column`` of a parquet file, by value (Polars, streaming)."""
    counts = pl.scan_parquet(path).group_by(column).len().sort(column)
    return {k: int(c) for k, c in counts.collect(engine="streaming").iter_rows()}


def plan_outcomes(n: int, rejects: list[dict]) -> dict:
    """Planner outputs accepted / rejected, rejects counted by reason class."""
    classes = Counter(reject_class(r["reason"]) for r in rejects if r["tier"] == "plan")
    return {
        "accepted": n - sum(classes.values()),
        "rejected": sum(classes.values()),
        "rejected_by_class": dict(sorted(classes.items())),
    }


def kind_counts(rows: list[dict]) -> dict[str, int]:
    if not rows:
        return {}
    df = pl.DataFrame({"kind": [r["kind"] for r in rows]})
    counts = df.group_by("kind").len().sort("kind")
    return {k: int(n) for k, n in counts.iter_rows()}
