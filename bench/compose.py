"""Benchmark: compose D_{j+1} from a synthetic iteration (target: 1,000,000 samples < 5 s).

Builds (vectorized, not timed) a D_j of N samples with a probe table (30% mastered), a
verdict per mismatch (MR / LR / BOTH_CORRECT / BOTH_WRONG mix), 4 EDDE children per
error seed (3 accepted) and a seed pool of N unused samples; then times
:func:`looptool.loop.compose.compose_next` for each ablation and prints a table.

    .venv/bin/python -m bench.compose [--n 1000000] [--ablations none,es_repeat]
"""

from __future__ import annotations

import argparse
import os
import time

import polars as pl
import pyarrow as pa

from looptool.core.tables import DATASET, EXPANSIONS, PROBE, SAMPLES, SEED_USED, VERDICTS
from looptool.loop.compose import compose_next
from looptool.loop.probe import select_hppl
from looptool.params.loop import LoopParams

OUTCOMES = ["MR", "LR", "HPPL", "KEPT_OUT", "DROPPED", "MR"]
VERDICT_OF = {
    "MR": "PRED_WRONG",
    "LR": "LABEL_WRONG",
    "HPPL": "BOTH_CORRECT",
    "KEPT_OUT": "BOTH_CORRECT",
    "DROPPED": "BOTH_WRONG",
}


def _samples(prefix: str, n: int, **extra: pl.Expr) -> pl.DataFrame:
    i = pl.int_range(n, dtype=pl.Int64)
    sid = pl.lit(prefix) + i.cast(pl.String)
    return pl.select(
        sample_id=sid,
        tools=pl.lit(
            '[{"description":"d","name":"get_weather","parameters":{"properties":{"city":{"type":"string"}},"type":"object"}}]'
        ),
        context=pl.lit('[{"content":"weather in ') + sid + pl.lit('?","role":"user"}]'),
        label=pl.lit('{"calls":[{"arguments":{"city":"')
        + sid
        + pl.lit('"},"name":"get_weather"}]}'),
        label_hash=pl.lit("h") + sid,
        label_rev=pl.lit(0, dtype=pl.Int32),
        kind=pl.lit("single"),
        origin=pl.lit("seed"),
        born_iter=pl.lit(0, dtype=pl.Int32),
        parent_id=pl.lit(None, dtype=pl.String),
        dialogue_id=pl.lit(None, dtype=pl.String),
        step=pl.lit(None, dtype=pl.Int32),
        **extra,
    )


def _table(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    missing = [
        pl.lit(None, dtype=pl.String).alias(f.name) for f in schema if f.name not in df.columns
    ]
    return df.with_columns(missing).select([f.name for f in schema]).to_arrow().cast(schema)


def synthetic_iteration(n: int, seed: int = 0) -> dict[str, pa.Table]:
    """Tables of one synthetic iteration with a D_j of ``n`` samples (vectorized)."""
    ds = _samples(
        "d", n, split=pl.lit("SEED"), iter=pl.lit(1, dtype=pl.Int32), copy=pl.lit(0, dtype=pl.Int32)
    )
    i = pl.int_range(n, dtype=pl.Int64)
    probe = pl.select(
        sample_id=ds.get_column("sample_id"),
        iter=pl.lit(1, dtype=pl.Int32),
        kind=ds.get_column("kind"),
        raw_text=pl.lit("<tool_call>...</tool_call>"),
        think=pl.lit(None, dtype=pl.String),
        prediction=pl.lit(None, dtype=pl.String),
        parse_error=pl.lit(None, dtype=pl.String),
        match=(i % 10) < 3,
        match_reason=pl.lit("value_mismatch"),
        ppl=1.0 + ((i * 7919) % 100_003).cast(pl.Float64) / 1000,
        n_tokens=pl.lit(20, dtype=pl.Int32),
        hppl=pl.lit(False),
    )
    probe_t = select_hppl(_table(probe, PROBE), LoopParams().probe)
    mism = probe.filter(~pl.col("match")).with_row_index("k")
    outcome = pl.lit(pl.Series(OUTCOMES)).get(pl.col("k") % len(OUTCOMES))
    verdicts = mism.select(
        "sample_id",
        iter=pl.lit(1, dtype=pl.Int32),
        outcome=outcome,
        tier=pl.lit("llm"),
        reason=pl.lit("judge verdict"),
        label_before=pl.lit('{"calls":[]}'),
        ppl=pl.col("ppl"),
    ).with_columns(
        verdict=pl.col("outcome").replace_strict(VERDICT_OF),
        label_after=pl.when(pl.col("outcome") == "LR").then(pl.lit('{"calls":[],"text":"fixed"}')),
        label_hash_after=pl.when(pl.col("outcome") == "LR").then(pl.lit("fixedhash")),
        kind_after=pl.when(pl.col("outcome") == "LR").then(pl.lit("irrelevant")),
    )
    seeds_es = verdicts.filter(pl.col("outcome").is_in(["MR", "LR"])).select("sample_id")
    children = seeds_es.join(
        pl.select(c=pl.int_range(4, dtype=pl.Int32)), how="cross"
    ).with_columns(cid=pl.col("sample_id") + pl.lit("_") + pl.col("c").cast(pl.String))
    exp = _samples("c", children.height).with_columns(
        sample_id=children.get_column("cid"),
        parent_id=children.get_column("sample_id"),
        origin=pl.lit("edde"),
        iter=pl.lit(1, dtype=pl.Int32),
        scenario=pl.lit("data_variation"),
        child_index=children.get_column("c"),
        accepted=children.get_column("c") < 3,
        reject_tier=pl.lit(None, dtype=pl.String),
        reject_reason=pl.lit(None, dtype=pl.String),
        raw_text=pl.lit(None, dtype=pl.String),
    )
    seeds = pl.concat([_samples("d", n), _samples("s", n)])
    used = ds.select("sample_id", used_iter=pl.lit(1, dtype=pl.Int32))
    return {
        "dataset": _table(ds, DATASET),
        "probe": probe_t,
        "verdicts": _table(verdicts, VERDICTS),
        "expansions": _table(exp, EXPANSIONS),
        "seed_samples": _table(seeds, SAMPLES),
        "seed_used": _table(used, SEED_USED),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="samples in D_j (and |D_{j+1}|)")
    ap.add_argument("--ablations", default="none,no_hppl,no_jglv,no_edde,hppl_replace,es_repeat")
    ap.add_argument(
        "--repeats", type=int, default=2, help="runs per ablation (first and best shown)"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tables = synthetic_iteration(args.n)
    build = time.perf_counter() - t0
    print(
        f"synthetic iteration: |D_j| = {args.n:,}, {tables['expansions'].num_rows:,} children, "
        f"{tables['seed_samples'].num_rows:,} seed samples (built in {build:.1f} s)"
    )
    rows = []
    header = f"{'ablation':<13} {'first s':>8} {'best s':>8} {'rows/s':>12} {'ES':>9} {'EE':>9} {'HPPL':>9} {'MASTERED':>9} {'SEED_NEW':>9} {'total':>9}"
    print(header)
    print("-" * len(header))
    for ablation in args.ablations.split(","):
        params = LoopParams(dataset_size=args.n, ablation=ablation)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = compose_next(**tables, next_j=2, params=params, seed=0)
            times.append(time.perf_counter() - t)
        first, best = times[0], min(times)
        sp = res.metrics["splits"]
        row = {
            "ablation": ablation,
            "first_s": first,
            "seconds": best,
            "rows_per_s": args.n / best,
            **sp,
            "total": res.metrics["total"],
        }
        rows.append(row)
        print(
            f"{ablation:<13} {first:>8.2f} {best:>8.2f} {args.n / best:>12,.0f} {sp.get('ES', 0):>9,} {sp.get('EE', 0):>9,} "
            f"{sp.get('HPPL', 0):>9,} {sp.get('MASTERED', 0):>9,} {sp.get('SEED_NEW', 0):>9,} {res.metrics['total']:>9,}"
        )
    load = os.getloadavg()[0]
    print(f"target: < 5 s per compose at n = 1,000,000 (load average during the run: {load:.1f})")
    return rows


if __name__ == "__main__":
    main()
