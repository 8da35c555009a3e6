"""eval@j: the policy of iteration j on the held-out split and on BFCL, as metrics
(eval.json), per-item rows (eval_items.parquet) and the iteration curve (eval_curve.csv).

The curve is chained: eval@j copies eval@{prev}'s curve and appends its own row, so
data/iter_J/eval_curve.csv holds every point from the warm start (j = 0) to J and DVC
can plot it (one file per iteration, since a DVC output has exactly one producer).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from looptool.core.tables import EVAL_ITEMS
from looptool.engines.base import Engine
from looptool.eval.bfcl import official as bfcl_official
from looptool.eval.bfcl.run import bfcl_metrics, evaluate_bfcl
from looptool.eval.heldout import evaluate_heldout, heldout_metrics
from looptool.eval.policy import policy_spec
from looptool.params import Params
from looptool.store.io import read_parquet
from looptool.store.views import Layout


def policy_engine(params: Params, model_dir: str | Path) -> Engine:
    """The policy engine (params' backend, request cache) loaded from ``model_dir``."""
    from looptool.engines.factory import engine_for_role

    engines = params.engines.model_copy(
        update={"policy": policy_spec(params.engines.policy, model_dir)}
    )
    return engine_for_role(engines, "policy", params.project.cache_dir)


def run_eval(
    params: Params, j: int, engine: Engine, root: str | Path = "."
) -> tuple[pa.Table, dict]:
    """Evaluate ``engine`` (iteration j's policy); returns (EVAL_ITEMS rows, eval.json dict)."""
    layout = Layout.at(root)
    ep = params.eval
    heldout = read_parquet(layout.heldout)
    parts = [
        evaluate_heldout(
            engine, heldout, iteration=j, date=params.project.date,
            max_tokens=ep.max_tokens, thinking=ep.thinking, limit=ep.heldout_limit,
            max_engine_failure_share=ep.max_engine_failure_share,
        )
    ]  # fmt: skip
    if ep.bfcl:
        bfcl_dir = (
            Path(ep.bfcl_dir) if Path(ep.bfcl_dir).is_absolute() else layout.root / ep.bfcl_dir
        )
        parts.append(
            evaluate_bfcl(
                engine, bfcl_dir, iteration=j, date=params.project.date,
                categories=ep.bfcl_categories, per_category=ep.bfcl_per_category,
                multi_turn_per_category=ep.bfcl_multi_turn_per_category,
                seed=ep.bfcl_seed, max_tokens=ep.max_tokens, thinking=ep.thinking,
                dot_to_underscore=ep.bfcl_dot_to_underscore,
                max_engine_failure_share=ep.max_engine_failure_share,
            )
        )  # fmt: skip
    items = pa.concat_tables(parts).cast(EVAL_ITEMS)
    metrics: dict = {
        "iter": j,
        # the warm start (j = 0) and iteration 1 (D_1 = the seed pool's head in every arm)
        # do not depend on the flag: eval_warmstart and eval@j do not list it, so the arms
        # of `looptool compare` share them through DVC's run-cache
        "static_baseline": ep.static_baseline if j > 1 else None,
        "model": str(layout.model_dir(j).relative_to(layout.root)),
        "heldout": heldout_metrics(items),
        "bfcl": bfcl_metrics(items) if ep.bfcl else None,
        "max_engine_failure_share": ep.max_engine_failure_share,
    }
    if ep.bfcl:
        metrics["bfcl_eval_version"] = bfcl_official.version()
    stats = getattr(engine, "stats", None)
    if callable(stats):
        metrics["engine"] = stats()
    return items, metrics


def curve_row(metrics: dict) -> dict:
    """One point of the iteration curve: held-out and BFCL accuracies as flat columns."""
    row: dict = {
        "iter": metrics["iter"],
        "static_baseline": metrics["static_baseline"],
        "heldout": metrics["heldout"]["accuracy"],
        "heldout_ci_low": metrics["heldout"].get("ci_low"),
        "heldout_ci_high": metrics["heldout"].get("ci_high"),
        "tool_call_rate": metrics["heldout"].get("tool_call_rate"),
    }
    for cat, m in (metrics.get("bfcl") or {}).items():
        row["bfcl_overall" if cat == "overall" else f"bfcl_{cat}"] = m["accuracy"]
    return row


def extend_curve(prev_curve: Path | None, metrics: dict) -> pl.DataFrame:
    """``prev_curve`` rows before this iteration plus this iteration's row."""
    row = pl.DataFrame([curve_row(metrics)])
    if prev_curve is None or not prev_curve.is_file():
        return row
    prev = pl.read_csv(prev_curve)
    prev = prev.filter(pl.col("iter") < metrics["iter"])
    return pl.concat([prev, row], how="diagonal_relaxed").sort("iter")


def format_eval(metrics: dict) -> str:
    """A short human summary for the stage log."""
    h = metrics["heldout"]
    acc = "n/a" if h["accuracy"] is None else f"{100 * h['accuracy']:.1f}%"
    ci = "" if h.get("ci_low") is None else f" [{100 * h['ci_low']:.1f}, {100 * h['ci_high']:.1f}]"
    calls = "n/a" if h.get("tool_call_rate") is None else f"{100 * h['tool_call_rate']:.1f}%"
    lines = [
        f"eval@{metrics['iter']}: held-out strict {acc}{ci} (n={h['n']}, parse "
        f"{h['parse_rate']}, tool-call rate on call labels {calls})"
    ]
    for cat, m in (metrics.get("bfcl") or {}).items():
        a = "n/a" if m["accuracy"] is None else f"{100 * m['accuracy']:.1f}%"
        n = "" if m["n"] is None else f"  n={m['n']}"
        lines.append(f"  bfcl {cat:<24} {a:>7}{n}")
    return "\n".join(lines)
