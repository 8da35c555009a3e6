"""The comparison table: one row per (arm, iteration) from each arm's eval.json files.

Columns (compare.csv, read by the HTML report): arm, iteration, n, heldout_exact,
ci_low, ci_high, tool_call_rate, bfcl_accuracy. Iteration 0 is the warm start, the same
checkpoint for every arm, repeated in each arm's rows so every series starts there.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from looptool.eval.interval import wilson_interval
from looptool.store.io import atomic_path

COLUMNS: dict[str, pl.DataType] = {
    "arm": pl.String(),
    "iteration": pl.Int64(),
    "n": pl.Int64(),
    "heldout_exact": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "tool_call_rate": pl.Float64(),
    "bfcl_accuracy": pl.Float64(),
}


class EvalFormatError(ValueError):
    """An eval.json without the fields the table needs; the message names arm and file."""


def eval_row(arm: str, iteration: int, metrics: dict, where: str) -> dict:
    """One table row from an eval.json dict (``where`` names it in errors).

    The interval is eval.json's heldout ``ci_low``/``ci_high`` when present, else the
    95% Wilson score interval of accuracy x n; ``tool_call_rate`` is blank when absent.
    """
    heldout = metrics.get("heldout")
    if not isinstance(heldout, dict) or "n" not in heldout or "accuracy" not in heldout:
        raise EvalFormatError(f"{where}: no heldout.accuracy / heldout.n")
    n, acc = heldout["n"], heldout["accuracy"]
    lo, hi = heldout.get("ci_low"), heldout.get("ci_high")
    if acc is not None and (lo is None or hi is None):
        if not isinstance(n, int) or n <= 0:
            raise EvalFormatError(f"{where}: heldout.n must be a positive integer, got {n!r}")
        lo, hi = wilson_interval(round(acc * n), n)
    bfcl = (metrics.get("bfcl") or {}).get("overall") or {}
    return {
        "arm": arm,
        "iteration": iteration,
        "n": n,
        "heldout_exact": acc,
        "ci_low": lo,
        "ci_high": hi,
        "tool_call_rate": heldout.get("tool_call_rate"),
        "bfcl_accuracy": bfcl.get("accuracy"),
    }


def build_table(evals: dict[str, dict[int, dict]]) -> pl.DataFrame:
    """``evals``: arm -> iteration -> eval.json dict; rows sorted by arm order, iteration."""
    rows = [
        eval_row(arm, j, metrics, f"arm {arm!r} data/iter_{j}/eval.json")
        for arm, per_iter in evals.items()
        for j, metrics in sorted(per_iter.items())
    ]
    return pl.DataFrame(rows, schema=COLUMNS, orient="row")


def warmstart_mismatch(table: pl.DataFrame) -> list[str]:
    """Arms whose iteration-0 row differs from the first arm's (the warm start was not
    shared: a stage the arms should share was rerun with other results)."""
    first = table.filter(pl.col("iteration") == 0).drop("arm")
    if first.height == 0:
        return []
    ref = first.row(0)
    arms = table.filter(pl.col("iteration") == 0)["arm"].to_list()
    return [arm for arm, row in zip(arms, first.rows(), strict=True) if row != ref]


def write_csv(table: pl.DataFrame, path: Path) -> None:
    """compare.csv, atomically; missing values are empty cells."""
    with atomic_path(path) as tmp:
        table.write_csv(tmp)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def format_table(table: pl.DataFrame, trainer: dict[str, str] | None = None) -> str:
    """The table as text: the warm start once, then each arm's iterations 1..J."""
    head = (
        f"{'arm':<14} {'iter':>4} {'n':>5} {'held-out exact % [95% CI]':>26} "
        f"{'tool-call %':>11} {'BFCL %':>7}"
    )
    lines = [head, "-" * len(head)]

    def line(arm: str, r: dict) -> str:
        ci = "" if r["ci_low"] is None else f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
        exact = f"{_pct(r['heldout_exact'])} {ci}".strip()
        return (
            f"{arm:<14} {r['iteration']:>4} {r['n'] if r['n'] is not None else '':>5} "
            f"{exact:>26} {_pct(r['tool_call_rate']):>11} {_pct(r['bfcl_accuracy']):>7}"
        )

    warm = table.filter(pl.col("iteration") == 0)
    if warm.height:
        lines.append(line("warm start", warm.row(0, named=True)))
    for arm in table["arm"].unique(maintain_order=True).to_list():
        for r in table.filter((pl.col("arm") == arm) & (pl.col("iteration") > 0)).iter_rows(
            named=True
        ):
            lines.append(line(arm, r))
    if trainer:
        kinds = set(trainer.values())
        used = ", ".join(f"{arm}: {t}" for arm, t in trainer.items())
        lines.append(
            f"trainer: {kinds.pop()} (every arm)" if len(kinds) == 1 else f"trainer: {used}"
        )
    lines.append("95% CI: Wilson score interval on the n held-out samples; blank: not recorded")
    return "\n".join(lines)
