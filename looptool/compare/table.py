"""The comparison table: one row per (arm, iteration) from each arm's eval.json files.

Columns (compare.csv, read by the HTML report): arm, iteration, n, heldout_exact,
ci_low, ci_high, tool_call_rate, bfcl_accuracy; then what the arm trained on in that
iteration (steps, sequences, rows_trained, too_long: D_j's rows over the length limit
and so never trained on, guard_tool_call_rate / guard_min_ratio / guard_ok: train@j's
collapse guard on its held-out check prompts, d_kinds: D_j's kind mix, splits_trained: the trained rows per
split, ES / EE / HPPL / SEED ..., where the run recorded it), what D_1..D_j drew
from the seed pool (pool_size, pool_unique_seen, pool_seen_mean), the paired exact
McNemar test against the loop arm at the same iteration on the held-out items both
scored (n_paired, mcnemar_b: this arm right and loop wrong, mcnemar_c: the reverse,
mcnemar_p), the same test against the warm start (iteration 0 of the same arm) on the
items both scored (warm_n_paired, warm_gained: right now and wrong at the warm start,
warm_lost: the reverse, warm_p) and the accuracy per sample kind (acc_single ...
acc_irrelevant). Iteration 0
is the warm start, the same checkpoint for every arm, repeated in each arm's rows so
every series starts there.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from looptool.compare.experiments import ArmResult
from looptool.eval.interval import mcnemar_exact, wilson_interval
from looptool.params.train import GuardParams
from looptool.store.io import atomic_path
from looptool.store.train_record import rows_too_long

KINDS = ("single", "parallel", "multi_step", "clarify", "irrelevant")

COLUMNS: dict[str, pl.DataType] = {
    "arm": pl.String(),
    "iteration": pl.Int64(),
    "n": pl.Int64(),
    "heldout_exact": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "tool_call_rate": pl.Float64(),
    "bfcl_accuracy": pl.Float64(),
    "steps": pl.Int64(),
    "sequences": pl.Int64(),
    "rows_trained": pl.Int64(),
    "too_long": pl.Int64(),
    "guard_tool_call_rate": pl.Float64(),
    "guard_min_ratio": pl.Float64(),
    "guard_ok": pl.Boolean(),
    "d_kinds": pl.String(),
    "splits_trained": pl.String(),
    "pool_size": pl.Int64(),
    "pool_unique_seen": pl.Int64(),
    "pool_seen_mean": pl.Float64(),
    "n_paired": pl.Int64(),
    "mcnemar_b": pl.Int64(),
    "mcnemar_c": pl.Int64(),
    "mcnemar_p": pl.Float64(),
    "warm_n_paired": pl.Int64(),
    "warm_gained": pl.Int64(),
    "warm_lost": pl.Int64(),
    "warm_p": pl.Float64(),
    **{f"acc_{k}": pl.Float64() for k in KINDS},
}
BASE_ARM = "loop"  # the McNemar columns compare every other arm with this one


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
    by_kind = heldout.get("by_kind") or {}
    return {
        "arm": arm,
        "iteration": iteration,
        "n": n,
        "heldout_exact": acc,
        "ci_low": lo,
        "ci_high": hi,
        "tool_call_rate": heldout.get("tool_call_rate"),
        "bfcl_accuracy": bfcl.get("accuracy"),
        **{f"acc_{k}": (by_kind.get(k) or {}).get("accuracy") for k in KINDS},
    }


def train_columns(train: dict | None) -> dict:
    """The budget columns from one train_metrics.json (blank when not recorded)."""
    if not train:
        return {}
    steps = train.get("global_step", train.get("steps"))
    guard = train.get("guard") or {}
    return {
        "steps": steps,
        "sequences": train.get("sequences_trained"),
        "rows_trained": train.get("samples_trained"),
        "too_long": rows_too_long(train),
        "guard_tool_call_rate": guard.get("tool_call_rate"),
        "guard_min_ratio": guard.get("min_ratio"),
        "guard_ok": guard.get("ok"),
        "d_kinds": _counts(train.get("kinds_dataset")),
        "splits_trained": _counts(train.get("splits_trained")),
    }


def _counts(counts: dict[str, int] | None) -> str | None:
    return " ".join(f"{k}={n}" for k, n in (counts or {}).items()) or None


def paired_columns(items: dict[str, bool], base: dict[str, bool]) -> dict:
    """McNemar columns for one arm's held-out outcomes against the base arm's."""
    common = items.keys() & base.keys()
    if not common:
        return {}
    b = sum(items[i] and not base[i] for i in common)
    c = sum(base[i] and not items[i] for i in common)
    return {
        "n_paired": len(common),
        "mcnemar_b": b,
        "mcnemar_c": c,
        "mcnemar_p": mcnemar_exact(b, c),
    }


def build_table(
    evals: dict[str, dict[int, dict]], details: dict[str, ArmResult] | None = None
) -> pl.DataFrame:
    """``evals``: arm -> iteration -> eval.json dict; ``details``: the arms' train metrics,
    held-out item outcomes and pool use (optional). Rows sorted by arm order, iteration."""
    details = details or {}
    base = details.get(BASE_ARM)
    rows = []
    for arm, per_iter in evals.items():
        d = details.get(arm)
        for j, metrics in sorted(per_iter.items()):
            row = eval_row(arm, j, metrics, f"arm {arm!r} data/iter_{j}/eval.json")
            if d is not None and j > 0:
                row.update(train_columns(d.train.get(j)))
                pool = d.pool.get(j) or {}
                row.update(
                    {k: pool.get(k) for k in ("pool_size", "pool_unique_seen", "pool_seen_mean")}
                )
            if d is not None and base is not None and arm != BASE_ARM and j > 0:
                row.update(paired_columns(d.items.get(j) or {}, base.items.get(j) or {}))
            if d is not None and j > 0:
                if vs := paired_columns(d.items.get(j) or {}, d.items.get(0) or {}):
                    row.update(warm_n_paired=vs["n_paired"], warm_gained=vs["mcnemar_b"],
                               warm_lost=vs["mcnemar_c"], warm_p=vs["mcnemar_p"])  # fmt: skip
            rows.append({c: row.get(c) for c in COLUMNS})
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


def _int(x: int | None) -> str:
    return "" if x is None else str(x)


def format_table(table: pl.DataFrame, trainer: dict[str, str] | None = None) -> str:
    """The table as text: the warm start once, then each arm's iterations 1..J."""
    head = (
        f"{'arm':<14} {'iter':>4} {'n':>5} {'held-out exact % [95% CI]':>26} "
        f"{'tool-call %':>11} {'BFCL %':>7} {'steps':>5} {'seqs':>5} {'long':>4} "
        f"{'vs loop b/c p':>16}"
    )
    lines = [head, "-" * len(head)]

    def line(arm: str, r: dict) -> str:
        ci = "" if r["ci_low"] is None else f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
        exact = f"{_pct(r['heldout_exact'])} {ci}".strip()
        paired = (
            ""
            if r.get("mcnemar_p") is None
            else f"{r['mcnemar_b']}/{r['mcnemar_c']} {r['mcnemar_p']:.3g}"
        )
        return (
            f"{arm:<14} {r['iteration']:>4} {r['n'] if r['n'] is not None else '':>5} "
            f"{exact:>26} {_pct(r['tool_call_rate']):>11} {_pct(r['bfcl_accuracy']):>7} "
            f"{_int(r.get('steps')):>5} {_int(r.get('sequences')):>5} "
            f"{_int(r.get('too_long')):>4} {paired:>16}"
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
    lines.append("long: rows of D_j over the trainer's length limit (never trained on)")
    lines.append(
        "vs loop: paired exact McNemar test on the items both scored, b = this arm right and "
        "loop wrong, c = the reverse"
    )
    lines.extend(warm_lines(table))
    lines.extend(floor_lines(table))
    lines.extend(kind_lines(table))
    return "\n".join(lines)


def _last_per_arm(table: pl.DataFrame) -> pl.DataFrame:
    """Each arm's row of its highest iteration, arms in table order."""
    return table.group_by("arm", maintain_order=True).agg(pl.all().sort_by("iteration").last())


def warm_lines(table: pl.DataFrame) -> list[str]:
    """Each arm's last iteration against the warm start, paired on the items both scored."""
    last = _last_per_arm(table.filter(pl.col("warm_p").is_not_null()))
    if last.height == 0:
        return []
    cells = [
        f"{r['arm']} {r['iteration']}: +{r['warm_gained']}/-{r['warm_lost']} "
        f"p {r['warm_p']:.3g} (n {r['warm_n_paired']})"
        for r in last.iter_rows(named=True)
    ]
    return ["vs warm start (last iteration, paired exact McNemar, items gained/lost):",
            "  " + "; ".join(cells)]  # fmt: skip


def floor_lines(table: pl.DataFrame) -> list[str]:
    """Each arm's lowest held-out tool-call rate over iterations 1..J against the floor
    ``min_ratio`` x the warm start's rate (train.guard.min_ratio as train@j recorded it,
    else the guard's default): where an arm's tool calls sank."""
    warm = table.filter((pl.col("iteration") == 0) & pl.col("tool_call_rate").is_not_null())
    trained = table.filter((pl.col("iteration") > 0) & pl.col("tool_call_rate").is_not_null())
    if warm.height == 0 or trained.height == 0:
        return []
    base = warm["tool_call_rate"][0]
    recorded = trained["guard_min_ratio"].drop_nulls()
    ratio = recorded[0] if recorded.len() else GuardParams().min_ratio
    floor = ratio * base
    lowest = trained.group_by("arm", maintain_order=True).agg(
        pl.all().sort_by(["tool_call_rate", "iteration"]).first()
    )
    cells = [
        f"{r['arm']} {_pct(r['tool_call_rate'])} (iteration {r['iteration']})"
        + (" BELOW" if r["tool_call_rate"] < floor else "")
        for r in lowest.iter_rows(named=True)
    ]
    return [
        f"lowest held-out tool-call % (iterations 1..J) vs the floor {ratio:g} x warm start's "
        f"{_pct(base)} = {_pct(floor)}:",
        "  " + "; ".join(cells),
    ]


def kind_lines(table: pl.DataFrame) -> list[str]:
    """Accuracy per sample kind at each arm's last iteration; kinds that score 0 in every
    arm (and the warm start) are named as such."""
    if table.height == 0:
        return []
    last = _last_per_arm(table)
    warm = table.filter(pl.col("iteration") == 0).head(1)
    out = ["per-kind held-out accuracy % (last iteration; warm start):"]
    zero = []
    for k in KINDS:
        col = f"acc_{k}"
        vals = [*last[col].to_list(), *warm[col].to_list()]
        if all(v is None for v in vals):
            continue
        if all(v in (None, 0.0) for v in vals):
            zero.append(k)
        cells = ", ".join(f"{a} {_pct(v)}" for a, v in zip(last["arm"], last[col], strict=True))
        out.append(f"  {k:<11} {cells}; warm start {_pct(warm[col][0] if warm.height else None)}")
    if zero:
        out.append(f"  scoring 0 in every arm: {', '.join(zero)}")
    return out if len(out) > 1 else []
