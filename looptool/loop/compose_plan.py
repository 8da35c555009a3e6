"""The plan behind every composed dataset (:mod:`looptool.loop.compose`).

Compose decides on narrow key frames (source table, row number, sample_id and the columns
a decision needs); :func:`plan_rows` stacks the chosen frames into the output plan and
:func:`materialize` gathers the wide sample columns from the source tables with sorted
Arrow takes into a DATASET table. Also the seeded order of a frame, repeats, and the
``seed_used`` bookkeeping.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from looptool.core.tables import DATASET, SAMPLE_FIELDS, SAMPLES, SEED_USED

SAMPLE_COLS = [f.name for f in SAMPLE_FIELDS]

# Source tables of D_{j+1} rows (the plan refers to them by position).
SOURCES = ("dataset", "expansions", "seed")
_SRC = {name: i for i, name in enumerate(SOURCES)}


def frame(table: pa.Table, columns: list[str]) -> pl.DataFrame:
    df = pl.from_arrow(table.select(columns))
    assert isinstance(df, pl.DataFrame)
    return df


def key_frame(table: pa.Table, src: str, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """(src, _r row number, sample_id, extra...) of each sample_id's first row."""
    df = frame(table, ["sample_id", *extra]).with_columns(
        src=pl.lit(_SRC[src], dtype=pl.Int8), _r=pl.int_range(pl.len(), dtype=pl.Int64)
    )
    return df.filter(pl.col("sample_id").is_first_distinct())


def shuffled(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Rows in a seeded pseudo-random order that depends only on the sample ids and the
    seed, not on the input row order (so unordered joins upstream stay reproducible)."""
    if df.height == 0:
        return df
    key = pl.col("sample_id").hash(seed=seed % (2**32))
    return df.with_columns(_o=key).sort(["_o", "sample_id"]).drop("_o")


def repeat_rows(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """``n`` rows cycling through ``df`` (empty if ``df`` is)."""
    if n <= 0 or df.height == 0:
        return df.head(0)
    idx = pl.select(_i=pl.int_range(n, dtype=pl.UInt32) % df.height)
    return idx.join(df.with_row_index("_i"), on="_i", how="left").drop("_i")


_PLAN_COLS = {
    "src": pl.Int8,
    "_r": pl.Int64,
    "sample_id": pl.String,
    "split": pl.String,
    "outcome": pl.String,
    "label_after": pl.String,
    "label_hash_after": pl.String,
    "kind_after": pl.String,
    "_rep": pl.Boolean,  # a deliberate repeat of a row already in the plan
}


def plan_rows(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Stack key frames into the output plan (missing override columns become null).

    Within each part, rows are put in source-row order: the selection was random, the
    order inside a split carries no meaning, and sorted gathers are several times faster
    than random ones on wide string columns.
    """
    frames = [
        p.select(
            [
                pl.col(c).cast(t) if c in p.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in _PLAN_COLS.items()
            ]
        )
        .with_columns(pl.col("_rep").fill_null(False))
        .sort(["src", "_r"])
        for p in parts
        if p.height
    ]
    if not frames:
        return pl.DataFrame(schema=_PLAN_COLS)
    return pl.concat(frames)


def materialize(plan: pl.DataFrame, sources: dict[str, pa.Table], iteration: int) -> pa.Table:
    """Gather the plan's rows from the source tables (one sorted take per run of rows
    from the same source), apply LR relabels, add split / iter / copy (DATASET table)."""
    src = plan.get_column("src")
    run_start = (src != src.shift(1)).fill_null(True) | (
        plan.get_column("_r").diff() < 0
    ).fill_null(True)
    starts = run_start.arg_true().to_list() + [plan.height]
    r = plan.get_column("_r").to_arrow()
    chunks = []
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        table = sources[SOURCES[src[a]]].select(SAMPLE_COLS).cast(SAMPLES)
        chunks.append(table.take(r.slice(a, b - a)))
    rows = pa.concat_tables(chunks) if chunks else SAMPLES.empty_table()
    # copy: 0 for a sample's first row; repeats (marked `_rep`) count up from 1. Every
    # repeated row has exactly one non-repeat occurrence, so a window over the repeats
    # alone (keyed by the integer source position, cheaper than the id) suffices.
    keys = plan.with_columns(
        lr=(pl.col("outcome") == "LR").fill_null(False),
        iter=pl.lit(iteration, dtype=pl.Int32),
        copy=pl.lit(0, dtype=pl.Int32),
    )
    if plan.get_column("_rep").any():
        rep = keys.with_row_index("_pos").filter(pl.col("_rep"))
        key = pl.col("src").cast(pl.Int64) * (1 << 40) + pl.col("_r")
        rep = rep.select("_pos", copy=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(key))
        copy = pl.zeros(plan.height, dtype=pl.Int32, eager=True).scatter(
            rep.get_column("_pos"), rep.get_column("copy")
        )
        keys = keys.with_columns(copy=copy)
    cols = {name: rows.column(name) for name in SAMPLE_COLS}
    if keys.get_column("lr").any():
        lr = keys.get_column("lr").to_arrow()
        cols["label"] = pc.if_else(lr, keys.get_column("label_after").to_arrow(), cols["label"])
        cols["label_hash"] = pc.if_else(
            lr, keys.get_column("label_hash_after").to_arrow(), cols["label_hash"]
        )
        cols["label_rev"] = pc.if_else(
            lr, pc.add(cols["label_rev"], pa.scalar(1, pa.int32())), cols["label_rev"]
        )
        cols["origin"] = pc.if_else(lr, pa.scalar("relabel"), cols["origin"])
        # An LR row without `kind_after` (none is written so) keeps its kind, never a null.
        kind_after = pc.coalesce(keys.get_column("kind_after").to_arrow(), cols["kind"])
        cols["kind"] = pc.if_else(lr, kind_after, cols["kind"])
    for name in ("split", "iter", "copy"):
        cols[name] = keys.get_column(name).to_arrow()
    return pa.table({f.name: cols[f.name] for f in DATASET}).cast(DATASET)


def used_frame(seed_used: pa.Table) -> pl.DataFrame:
    return frame(seed_used, ["sample_id", "used_iter"]).with_columns(
        pl.col("used_iter").cast(pl.Int32)
    )


def used_table(used: pl.DataFrame, new: pl.DataFrame, iteration: int) -> pa.Table:
    out = pl.concat([used, new.select("sample_id", used_iter=pl.lit(iteration, dtype=pl.Int32))])
    return out.to_arrow().cast(SEED_USED)
