"""Score a file of BFCL predictions, per category.

Predictions are JSON lines ``{"id": ..., "result": ...}`` (``result`` as
looptool.eval.bfcl.decode reads it), each scored against its single-turn entry
(looptool.eval.bfcl.single_turn) or multi-turn entry (looptool.eval.bfcl.multi_turn).
Bad lines and unknown ids become invalid rows with their line number, never exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from looptool.core.match_bfcl import BfclDataError, BfclResult
from looptool.eval.bfcl.data import ALL_CATEGORIES, MULTI_TURN_CATEGORIES, category_of
from looptool.eval.bfcl.multi_turn import load_multi_turn
from looptool.eval.bfcl.single_turn import load_bfcl


@dataclass
class EvalReport:
    """Per-prediction rows, line-numbered problems and per-category accuracy."""

    rows: list[dict]  # {"id", "valid", "error_type" (None when valid)} in prediction order
    categories: list[str | None]  # category per row (None: unknown id / malformed line)
    problems: list[tuple[int, str]]  # (line number, message)
    data_counts: dict[str, int]  # entries per category in the data dir

    def accuracy(self) -> pl.DataFrame:
        """category, data, predicted, valid, accuracy; plus ``unmatched`` and ``overall``."""
        df = pl.DataFrame(
            {
                "category": [c or "unmatched" for c in self.categories],
                "valid": [r["valid"] for r in self.rows],
            },
            schema={"category": pl.Utf8, "valid": pl.Boolean},
        )
        agg = df.group_by("category").agg(
            pl.len().cast(pl.Int64).alias("predicted"),
            pl.col("valid").sum().cast(pl.Int64).alias("valid"),
        )
        order = {c: i for i, c in enumerate((*ALL_CATEGORIES, *MULTI_TURN_CATEGORIES, "unmatched"))}
        agg = agg.with_columns(
            pl.col("category")
            .replace_strict(self.data_counts, default=None, return_dtype=pl.Int64)
            .alias("data"),
            pl.col("category")
            .replace_strict(order, default=len(order), return_dtype=pl.Int64)
            .alias("_o"),
        ).sort("_o")
        total = pl.DataFrame(
            {
                "category": ["overall"],
                "predicted": [len(self.rows)],
                "valid": [sum(r["valid"] for r in self.rows)],
                "data": [None],
            },
            schema={
                "category": pl.Utf8,
                "predicted": pl.Int64,
                "valid": pl.Int64,
                "data": pl.Int64,
            },
        )
        out = pl.concat([agg.drop("_o"), total], how="diagonal")
        return out.select(
            "category",
            "data",
            "predicted",
            "valid",
            pl.when(pl.col("predicted") > 0)
            .then(pl.col("valid") / pl.col("predicted"))
            .alias("accuracy"),
        )

    def table(self) -> str:
        """Plain-text accuracy table."""
        lines = [f"{'category':<24} {'data':>6} {'pred':>6} {'valid':>6} {'accuracy':>9}"]
        for r in self.accuracy().iter_rows(named=True):
            data = "" if r["data"] is None else str(r["data"])
            acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
            lines.append(
                f"{r['category']:<24} {data:>6} {r['predicted']:>6} {r['valid']:>6} {acc:>9}"
            )
        return "\n".join(lines)


def read_predictions(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line number, parsed JSON or None, error or None) per non-empty line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except (json.JSONDecodeError, RecursionError) as exc:
                yield lineno, None, f"invalid JSON ({getattr(exc, 'msg', 'too deeply nested')})"


class ScorableEntry(Protocol):
    """A BFCL entry of any kind: single-turn (BfclEntry) or multi-turn."""

    category: str

    def score(self, result: Any, dot_to_underscore: bool = False) -> BfclResult: ...


def evaluate(
    data: Mapping[str, ScorableEntry],
    records: Iterable[tuple[int, Any, str | None]],
    *,
    dot_to_underscore: bool = False,
    data_counts: dict[str, int] | None = None,
) -> EvalReport:
    """Score prediction records (as from :func:`read_predictions`) against loaded data."""
    rows: list[dict] = []
    cats: list[str | None] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}

    def bad(lineno: int, eid: Any, error_type: str, message: str) -> None:
        rows.append(
            {"id": eid if isinstance(eid, str) else None, "valid": False, "error_type": error_type}
        )
        cats.append(None)
        problems.append((lineno, message))

    for lineno, obj, err in records:
        if err is not None:
            bad(lineno, None, "malformed_line", err)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or "result" not in obj:
            bad(
                lineno, None, "malformed_line", 'expected an object {"id": <string>, "result": ...}'
            )
            continue
        eid = obj["id"]
        entry = data.get(eid)
        if entry is None:
            bad(lineno, eid, "unknown_id", f"id {eid!r} is not in the BFCL data")
            continue
        if eid in seen:
            bad(lineno, eid, "duplicate_id", f"id {eid!r} already predicted on line {seen[eid]}")
            continue
        seen[eid] = lineno
        try:
            res = entry.score(obj["result"], dot_to_underscore)
        except BfclDataError as exc:
            problems.append((lineno, f"id {eid!r}: unusable BFCL entry: {exc}"))
            res = BfclResult(False, "bad_entry", {"message": str(exc)})
        rows.append({"id": eid, "valid": res.valid, "error_type": res.error_type or None})
        cats.append(entry.category)
    if data_counts is None:
        data_counts = {}
        for e in data.values():
            data_counts[e.category] = data_counts.get(e.category, 0) + 1
    return EvalReport(rows, cats, problems, data_counts)


def evaluate_file(
    data_dir: str | Path, predictions: str | Path, *, dot_to_underscore: bool = False
) -> EvalReport:
    """Load only the categories the predictions need, then score every line. Multi-turn
    ids are scored against the installed bfcl-eval data (official checker)."""
    records = list(read_predictions(predictions))
    wanted = {
        category_of(obj.get("id"))
        for _, obj, err in records
        if err is None and isinstance(obj, dict)
    }
    data: dict[str, ScorableEntry] = dict(
        load_bfcl(data_dir, [c for c in ALL_CATEGORIES if c in wanted])
    )
    multi = [c for c in MULTI_TURN_CATEGORIES if c in wanted]
    if multi:
        data.update(load_multi_turn(multi))
    counts: dict[str, int] = {}
    for e in data.values():
        counts[e.category] = counts.get(e.category, 0) + 1
    return evaluate(data, records, dot_to_underscore=dot_to_underscore, data_counts=counts)
