"""Compose the next dataset (Eq. 5): D_{j+1} = ES + EE + HPPL + Seed-new, fixed size N.

All bookkeeping is Polars expressions over whole tables (no per-row Python).

D_1 (:func:`init_dataset`): a seeded subset of N samples of the D_seed training split,
split ``SEED``; the rest of D_seed is the Seed-new pool.

D_{j+1} (:func:`compose_next`):

1. Candidates. ES = MR + LR judge outcomes (LR rows carry the prediction as label,
   ``label_rev + 1``, origin ``relabel``, the new label's kind); EE = accepted EDDE
   children; HPPL = the probe's HPPL selection plus BOTH_CORRECT mismatches the judge sent
   to HPPL, in HPPL order (``probe.hppl_groups``: highest PPL first, by default within
   each kind group with the groups kept in proportion, :func:`~looptool.loop.probe.rank_by_ppl`);
   Seed-new pool = D_seed samples never used in training (cumulative ``seed_used``),
   seeded shuffle.
2. Seed-new target S: ``compose.seed_new`` (an explicit count, e.g. a per-iteration
   override), else ``seed_new_schedule``, else ``N * start_fraction * decay^(j+1-2)``
   (paper Table 3: halving); capped by the pool.
3. The loop budget B = N - S is split among ES / EE / HPPL. Overflow is trimmed by a
   documented rule (``compose.trim``): ``proportional`` (default) keeps the same fraction
   of every split, so the candidate mix (EE ~ k x ES, paper Table 3) survives, rounding
   remainders going to the splits in ``priority`` order and no non-empty split dropping
   to zero; ``priority`` first gives each split up to ``min_share * B`` rows, then the
   rest of B to the splits in ``priority`` order (default ES, EE, HPPL). Within a split:
   ES and EE keep a seeded random subset, HPPL keeps the head of its HPPL order.
4. Ablations (DESIGN §6, Table 4) change the candidates or substitute the EE slots:
   ``no_hppl`` random mastered samples (split MASTERED) in place of HPPL, same count;
   ``no_jglv`` every mismatch is an ES row with its label kept (no LR, no BOTH_CORRECT to
   HPPL); ``no_edde`` no EE; ``hppl_replace`` the EE slots go to the next mastered
   samples in HPPL order (split HPPL); ``es_repeat`` the EE slots go to repeats of the
   selected ES rows (split ES, ``copy`` > 0).
5. Shortfall (fewer candidates than B) is filled by extra Seed-new from the pool, then by
   repeating selected loop rows in ES, EE, HPPL order; only if there is nothing at all to
   repeat is D_{j+1} smaller than N (reported as ``shortfall`` in the metrics).

The decisions are made on narrow key frames (sample_id, row number, PPL, outcome); the
wide sample columns are then gathered with sorted Arrow takes (one per split part and
source table), so within a split rows keep their source order. Random choices hash the
sample id with the seed, so they do not depend on the input row order. The plan and its
gathering live in :mod:`looptool.loop.compose_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from looptool.core.tables import SEED_POOL, SEED_USED
from looptool.loop.compose_plan import (
    frame,
    key_frame,
    materialize,
    plan_rows,
    repeat_rows,
    shuffled,
    used_frame,
    used_table,
)
from looptool.loop.probe import rank_by_ppl
from looptool.params import Params
from looptool.params.loop import LoopParams

LOOP_SPLITS = ("ES", "EE", "HPPL")


@dataclass
class ComposeResult:
    dataset: pa.Table  # DATASET schema
    seed_used: pa.Table  # SEED_USED schema, cumulative
    metrics: dict


def seed_new_target(params: LoopParams, next_j: int) -> int:
    """Seed-new count for D_{next_j} (next_j >= 2) from the schedule."""
    cp = params.compose
    if cp.seed_new is not None:
        n = cp.seed_new
    elif cp.seed_new_schedule is not None:
        sched = cp.seed_new_schedule
        n = sched[min(next_j - 2, len(sched) - 1)] if sched else 0
    else:
        n = round(
            params.dataset_size * cp.seed_new_start_fraction * cp.seed_new_decay ** (next_j - 2)
        )
    return max(0, min(int(n), params.dataset_size))


def allocate(
    avail: dict[str, int],
    budget: int,
    priority: list[str],
    min_share: float,
    trim: str = "priority",
) -> dict[str, int]:
    """Rows per loop split for ``budget`` (see the module docstring, step 3)."""
    total = sum(avail.values())
    if total <= budget:
        return dict(avail)
    if trim == "proportional":
        # Largest-remainder rounding (ties by priority), in integer arithmetic.
        alloc = {s: avail[s] * budget // total for s in avail}
        by_remainder = sorted(
            priority, key=lambda s: (-(avail[s] * budget % total), priority.index(s))
        )
        for s in by_remainder[: budget - sum(alloc.values())]:
            alloc[s] += 1
        # A non-empty split keeps at least one row, taken from the largest allocation.
        for s in priority:
            donor = max(priority, key=lambda k: alloc[k])
            if avail[s] and not alloc[s] and alloc[donor] > 1:
                alloc[donor] -= 1
                alloc[s] = 1
        return alloc
    floor = int(budget * min_share)
    alloc = {s: min(avail[s], floor) for s in avail}
    rest = budget - sum(alloc.values())
    for s in priority:
        add = max(0, min(avail[s] - alloc[s], rest))
        alloc[s] += add
        rest -= add
    return alloc


def seed_pool_target(params: Params) -> int | None:
    """How many training seed samples the run may use (``loop.compose.seed_pool``):
    auto = |D_1| + the Seed-new count of every D_j the loop trains on (j = 2..J, each with
    its iteration's overrides, as compose@{j-1} computes it); None = all of them."""
    setting = params.loop.compose.seed_pool
    if setting == "all":
        return None
    if isinstance(setting, int):
        return setting
    js = sorted(int(item.j) for item in params.iterations.values())
    total = params.loop.dataset_size
    for j in js:
        if j + 1 in js:  # compose@j builds D_{j+1}; D_{J+1} is never trained on
            total += seed_new_target(params.for_iteration(j).loop, j + 1)
    return total


def draw_seed_pool(
    seed_samples: pa.Table, *, size: int | None, seed: int, reserved: pa.Table | None = None
) -> pa.Table:
    """The run's seed pool (SEED_POOL): ``size`` training seed samples (None: all) in a
    seeded order that depends only on the ids and ``seed``; never the warm start's
    ``reserved`` samples."""
    held = used_frame(reserved if reserved is not None else SEED_USED.empty_table())
    avail = key_frame(seed_samples, "seed").join(held, on="sample_id", how="anti")
    order = shuffled(avail, seed)
    if size is not None:
        order = order.head(size)
    ranked = order.select("sample_id", pool_rank=pl.int_range(pl.len(), dtype=pl.Int32))
    return ranked.to_arrow().cast(SEED_POOL)


def in_pool(seed_samples: pa.Table, pool: pa.Table) -> pa.Table:
    """The rows of ``seed_samples`` whose sample is in ``pool`` (the Seed-new candidates)."""
    return seed_samples.filter(pc.is_in(seed_samples.column("sample_id"), pool.column("sample_id")))


def init_dataset(
    seed_samples: pa.Table, pool: pa.Table, *, size: int, reserved: pa.Table | None = None
) -> ComposeResult:
    """D_1: the first ``size`` samples of the seed ``pool`` (split SEED) and its seed_used table.

    ``reserved`` (SEED_USED rows, used_iter 0) are the warm start's own samples: the pool
    never holds them and they enter seed_used as used by iteration 0, so Seed-new never
    draws them.
    """
    held = used_frame(reserved if reserved is not None else SEED_USED.empty_table())
    seeds = key_frame(seed_samples, "seed")
    order = frame(pool, ["sample_id", "pool_rank"]).sort("pool_rank")
    chosen = (
        seeds.join(order.head(size), on="sample_id")
        .sort("pool_rank")
        .drop("pool_rank")
        .with_columns(split=pl.lit("SEED"))
    )
    ds = materialize(plan_rows([chosen]), {"seed": seed_samples}, 1)
    available = seeds.join(held, on="sample_id", how="anti").height
    metrics = {
        "iteration": 1,
        "target": size,
        "total": ds.num_rows,
        "splits": {"SEED": ds.num_rows},
        "seed_pool": seeds.height,
        "reserved_warmstart": seeds.height - available,
        "pool_size": pool.num_rows,
        "pool_available": available,
        "seed_pool_left": pool.num_rows - ds.num_rows,
        "shortfall": size - ds.num_rows,
    }
    reserved_here = held.join(seeds.select("sample_id"), on="sample_id", how="semi")
    return ComposeResult(ds, used_table(reserved_here, chosen, 1), metrics)


def compose_next(
    dataset: pa.Table,
    probe: pa.Table,
    verdicts: pa.Table,
    expansions: pa.Table,
    seed_samples: pa.Table,
    seed_used: pa.Table,
    *,
    next_j: int,
    params: LoopParams,
    seed: int = 0,
) -> ComposeResult:
    """D_{next_j} from iteration j's tables; see the module docstring for the rules."""
    n_target, ablation, cp = params.dataset_size, params.ablation, params.compose
    rs = seed * 1_000_003 + next_j  # one RNG stream per (project seed, iteration)
    ds = key_frame(dataset, "dataset")
    groups = params.probe.hppl_groups
    pr = frame(probe, ["sample_id", "match", "ppl", "hppl", "kind"])
    vd = frame(
        verdicts, ["sample_id", "outcome", "label_after", "label_hash_after", "kind_after", "ppl"]
    )

    # 1. candidates (key frames) -------------------------------------------------------
    if ablation == "no_jglv":
        es = ds.join(pr.filter(~pl.col("match")).select("sample_id"), on="sample_id")
        es = es.with_columns(outcome=pl.lit("MR"))
        hppl_bc = ds.head(0).with_columns(
            ppl=pl.lit(None, dtype=pl.Float64), kind=pl.lit(None, dtype=pl.String)
        )
    else:
        es = ds.join(
            vd.filter(pl.col("outcome").is_in(["MR", "LR"])).drop("ppl"),
            on="sample_id",
            maintain_order="left",
        )
        hppl_bc = ds.join(
            vd.filter(pl.col("outcome") == "HPPL").select("sample_id", "ppl"),
            on="sample_id",
            maintain_order="left",
        ).join(pr.select("sample_id", "kind"), on="sample_id", how="left")
    es = es.with_columns(split=pl.lit("ES"))

    mastered = ds.join(pr.filter(pl.col("match")).drop("match"), on="sample_id")
    hppl = rank_by_ppl(
        pl.concat([mastered.filter(pl.col("hppl")).drop("hppl"), hppl_bc], how="diagonal_relaxed"),
        groups,
    )
    hppl_split = "HPPL"
    if ablation == "no_hppl":
        hppl = shuffled(mastered.drop("hppl"), rs + 1).head(hppl.height)
        hppl_split = "MASTERED"
    hppl = hppl.with_columns(split=pl.lit(hppl_split))

    seeds = key_frame(seed_samples, "seed")
    taken = ds.select("sample_id")  # ES and HPPL rows all come from D_j
    if ablation == "no_edde":
        ee = key_frame(expansions.slice(0, 0), "expansions")
    else:
        ee = (
            key_frame(expansions, "expansions", ("accepted",))
            .filter(pl.col("accepted"))
            .join(taken, on="sample_id", how="anti")
            .join(seeds.select("sample_id"), on="sample_id", how="anti")
        )
    ee = ee.with_columns(split=pl.lit("EE"))

    used = used_frame(seed_used)
    pool = shuffled(
        seeds.join(pl.concat([used.select("sample_id"), taken]), on="sample_id", how="anti"),
        rs + 2,
    ).with_columns(split=pl.lit("SEED_NEW"))

    # 2-3. allocation -----------------------------------------------------------------
    s_sched = seed_new_target(params, next_j)
    s_first = min(s_sched, pool.height)
    budget = n_target - s_first
    avail = {"ES": es.height, "EE": ee.height, "HPPL": hppl.height}
    alloc = allocate(avail, budget, list(cp.priority), cp.min_share, cp.trim)
    es_sel = shuffled(es, rs + 3).head(alloc["ES"])
    ee_sel = shuffled(ee, rs + 4).head(alloc["EE"])
    hppl_sel = hppl.head(alloc["HPPL"])

    # 4. EE-slot substitutions ----------------------------------------------------------
    substitute = es_sel.head(0)
    if ablation == "hppl_replace":
        # The next-highest-PPL mastered samples not already in HPPL.
        more = mastered.filter(pl.col("ppl").is_not_null()).join(
            hppl_sel, on="sample_id", how="anti"
        )
        substitute = rank_by_ppl(more, groups).head(ee_sel.height)
        substitute = substitute.with_columns(split=pl.lit("HPPL"))
        ee_sel = ee_sel.head(0)
    elif ablation == "es_repeat":
        substitute = repeat_rows(es_sel, ee_sel.height).with_columns(_rep=pl.lit(True))
        ee_sel = ee_sel.head(0)

    # 5. shortfall fill -----------------------------------------------------------------
    loop_rows = es_sel.height + ee_sel.height + hppl_sel.height + substitute.height
    deficit = budget - loop_rows
    s_extra = max(0, min(deficit, pool.height - s_first))
    seed_new = pool.head(s_first + s_extra)
    deficit -= s_extra
    repeats = repeat_rows(plan_rows([es_sel, ee_sel, hppl_sel]), deficit).with_columns(
        _rep=pl.lit(True)
    )

    plan = plan_rows([es_sel, substitute, ee_sel, hppl_sel, seed_new, repeats])
    out = materialize(
        plan, {"dataset": dataset, "expansions": expansions, "seed": seed_samples}, next_j
    )
    new_used = used_table(used, seed_new, next_j)

    counts = dict(plan.group_by("split").len().sort("split").iter_rows())
    es_kinds = dict(es_sel.group_by("outcome").len().iter_rows())
    metrics = {
        "iteration": next_j,
        "ablation": ablation,
        "target": n_target,
        "total": out.num_rows,
        "splits": counts,
        "es_mr": int(es_kinds.get("MR", 0)),
        "es_lr": int(es_kinds.get("LR", 0)),
        "available": {**avail, "SEED_NEW_POOL": pool.height},
        "selected": {"ES": es_sel.height, "EE": ee_sel.height, "HPPL": hppl_sel.height},
        "trimmed": {s: avail[s] - alloc[s] for s in LOOP_SPLITS},
        "ee_slots_substituted": substitute.height,
        "seed_new_scheduled": s_sched,
        "seed_new": seed_new.height,
        "seed_new_extra_fill": s_extra,
        "repeat_fill": repeats.height,
        "copies": int(pc.sum(pc.greater(out.column("copy"), 0)).as_py() or 0),
        "shortfall": n_target - out.num_rows,
        "seed_pool_left": pool.height - seed_new.height,
        "seed_used_total": new_used.num_rows,
    }
    return ComposeResult(out, new_used, metrics)


def compose_static_pool(
    seed_samples: pa.Table, pool: pa.Table, seed_used: pa.Table, *, next_j: int, size: int
) -> ComposeResult:
    """The paper's "w/o iterations" baseline (``eval.static_source: pool``): D_{next_j} is
    the next ``size`` samples of the seed ``pool`` in its seeded order, cycling: D_1 took
    ranks 0..size-1, D_{next_j} starts at rank (next_j - 1) x size mod |pool|, so every
    pool sample is seen once before any is seen again, as epochs over a finite D_seed."""
    order = frame(pool, ["sample_id", "pool_rank"]).sort("pool_rank")
    seeds = key_frame(seed_samples, "seed").join(order, on="sample_id").sort("pool_rank")
    n_pool = seeds.height
    used = used_frame(seed_used)
    start = ((next_j - 1) * size) % n_pool if n_pool else 0
    if n_pool == 0 or size <= 0:
        chosen = seeds.head(0).drop("pool_rank").with_columns(split=pl.lit("SEED"))
    else:
        pos = pl.select(_i=(pl.int_range(size, dtype=pl.Int64) + start) % n_pool)
        chosen = (
            pos.join(seeds.with_row_index("_i").with_columns(pl.col("_i").cast(pl.Int64)), on="_i")
            .drop("_i", "pool_rank")
            .with_columns(split=pl.lit("SEED"))
        )
    # a pool smaller than |D| repeats inside one D_j: later occurrences are copies
    chosen = chosen.with_columns(_rep=~pl.col("sample_id").is_first_distinct())
    out = materialize(plan_rows([chosen]), {"seed": seed_samples}, next_j)
    fresh = chosen.filter(~pl.col("_rep")).join(used, on="sample_id", how="anti")
    metrics = {
        "iteration": next_j,
        "static_baseline": True,
        "static_source": "pool",
        "target": size,
        "total": out.num_rows,
        "splits": {"SEED": out.num_rows},
        "pool_size": n_pool,
        "pool_start_rank": start,
        "seed_fresh": fresh.height,
        "seed_reused": out.num_rows - fresh.height,
        "shortfall": size - out.num_rows,
        "seed_used_total": used.height + fresh.height,
    }
    return ComposeResult(out, used_table(used, fresh.select("sample_id"), next_j), metrics)


def compose_static(
    seed_samples: pa.Table, seed_used: pa.Table, *, next_j: int, size: int, seed: int = 0
) -> ComposeResult:
    """The static baseline with an unlimited fresh pool (``eval.static_source: fresh``):
    D_{j+1} drawn from the whole D_seed training split (split SEED), seed samples not
    used yet first, then already-used ones. More unique data than the loop sees."""
    rs = seed * 1_000_003 + next_j
    seeds = key_frame(seed_samples, "seed")
    used = used_frame(seed_used)
    fresh = shuffled(seeds.join(used, on="sample_id", how="anti"), rs + 2)
    # Re-use samples D_1.. trained on, never the warm start's reserved ones (used_iter 0).
    again = shuffled(
        seeds.join(
            used.filter(pl.col("used_iter") > 0).select("sample_id"), on="sample_id", how="semi"
        ),
        rs + 5,
    )
    chosen = pl.concat([fresh, again]).head(size).with_columns(split=pl.lit("SEED"))
    out = materialize(plan_rows([chosen]), {"seed": seed_samples}, next_j)
    n_fresh = min(fresh.height, size)
    metrics = {
        "iteration": next_j,
        "static_baseline": True,
        "static_source": "fresh",
        "target": size,
        "total": out.num_rows,
        "splits": {"SEED": out.num_rows},
        "seed_fresh": n_fresh,
        "seed_reused": out.num_rows - n_fresh,
        "shortfall": size - out.num_rows,
        "seed_used_total": used.height + n_fresh,
    }
    return ComposeResult(out, used_table(used, fresh.head(n_fresh), next_j), metrics)
