"""Compose (Eq. 5): D_1, D_{j+1} = ES + EE + HPPL + Seed-new, ablations, shortfall, schedule."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from looptool.core.tables import (
    DATASET,
    EXPANSIONS,
    PROBE,
    SAMPLES,
    SEED_USED,
    VERDICTS,
    rows_to_table,
)
from looptool.loop.compose import (
    allocate,
    compose_next,
    compose_static,
    compose_static_pool,
    draw_seed_pool,
    in_pool,
    init_dataset,
    seed_new_target,
    seed_pool_target,
)
from looptool.loop.probe import select_hppl
from looptool.params.loop import LoopParams

# Verdict outcome per mismatch index (cycled): the Alg. 1 paths.
CYCLE = [
    ("PRED_WRONG", "MR"),
    ("LABEL_WRONG", "LR"),
    ("BOTH_CORRECT", "HPPL"),
    ("BOTH_CORRECT", "KEPT_OUT"),
    ("BOTH_WRONG", "DROPPED"),
    ("PRED_WRONG", "MR"),
]


def _row(sid: str, **kw) -> dict:
    return {
        "sample_id": sid,
        "tools": "[]",
        "context": f'[{{"content":"{sid}","role":"user"}}]',
        "label": f'{{"calls":[],"text":"{sid}"}}',
        "label_hash": f"h_{sid}",
        "label_rev": 0,
        "kind": "irrelevant",
        "origin": "seed",
        "born_iter": 0,
        **kw,
    }


def synth(
    n: int = 200, pool: int = 400, children: int = 4, accepted: int = 3
) -> dict[str, pa.Table]:
    """A synthetic iteration 1: D_1 of ``n`` seed samples, 30% mastered."""
    ds = rows_to_table([_row(f"d{i}", split="SEED", iter=1, copy=0) for i in range(n)], DATASET)
    probe_rows, verdict_rows, exp_rows = [], [], []
    k = 0
    for i in range(n):
        mastered = i % 10 < 3
        ppl = 1.0 + ((i * 7919) % 1000) / 100
        probe_rows.append(
            {
                "sample_id": f"d{i}",
                "iter": 1,
                "kind": "irrelevant",
                "raw_text": "",
                "match": mastered,
                "match_reason": "x",
                "ppl": ppl,
                "n_tokens": 5,
                "hppl": False,
            }
        )
        if mastered:
            continue
        verdict, outcome = CYCLE[k % len(CYCLE)]
        k += 1
        lr = outcome == "LR"
        verdict_rows.append(
            {
                "sample_id": f"d{i}",
                "iter": 1,
                "verdict": verdict,
                "tier": "llm",
                "reason": "r",
                "label_before": f'{{"calls":[],"text":"d{i}"}}',
                "label_after": f'{{"calls":[],"text":"new{i}"}}' if lr else None,
                "label_hash_after": f"nh{i}" if lr else None,
                "kind_after": "irrelevant" if lr else None,
                "ppl": ppl * (10 if outcome == "HPPL" else 1),
                "outcome": outcome,
            }
        )
        if outcome in ("MR", "LR"):
            for c in range(children):
                exp_rows.append(
                    _row(
                        f"c{i}_{c}",
                        origin="edde",
                        born_iter=1,
                        parent_id=f"d{i}",
                        iter=1,
                        scenario="data_variation",
                        child_index=c,
                        accepted=c < accepted,
                    )
                )
    probe = select_hppl(rows_to_table(probe_rows, PROBE), LoopParams().probe)
    seeds = rows_to_table(
        [_row(f"d{i}") for i in range(n)] + [_row(f"s{i}") for i in range(pool)], SAMPLES
    )
    used = rows_to_table([{"sample_id": f"d{i}", "used_iter": 1} for i in range(n)], SEED_USED)
    return {
        "dataset": ds,
        "probe": probe,
        "verdicts": rows_to_table(verdict_rows, VERDICTS),
        "expansions": rows_to_table(exp_rows, EXPANSIONS),
        "seed_samples": seeds,
        "seed_used": used,
    }


def run(tables: dict, **loop) -> tuple[pl.DataFrame, dict, pl.DataFrame]:
    params = LoopParams(**loop)
    res = compose_next(**tables, next_j=2, params=params, seed=0)
    assert res.dataset.schema.equals(DATASET)
    assert res.seed_used.schema.equals(SEED_USED)
    return pl.from_arrow(res.dataset), res.metrics, pl.from_arrow(res.seed_used)


def ids(df: pl.DataFrame, split: str) -> set[str]:
    return set(df.filter(pl.col("split") == split).get_column("sample_id").to_list())


def outcome_ids(tables: dict, *outcomes: str) -> set[str]:
    v = pl.from_arrow(tables["verdicts"])
    return set(v.filter(pl.col("outcome").is_in(list(outcomes))).get_column("sample_id").to_list())


def _d1(seeds, size, seed, reserved=None, pool_size=None):
    pool = draw_seed_pool(seeds, size=pool_size, seed=seed, reserved=reserved)
    return init_dataset(seeds, pool, size=size, reserved=reserved)


def test_init_dataset_is_a_seeded_subset():
    t = synth()
    a = _d1(t["seed_samples"], 150, 3)
    b = _d1(t["seed_samples"], 150, 3)
    c = _d1(t["seed_samples"], 150, 4)
    df = pl.from_arrow(a.dataset)
    assert df.height == 150 and set(df.get_column("split")) == {"SEED"}
    assert df.get_column("sample_id").n_unique() == 150
    assert a.dataset.equals(b.dataset) and not a.dataset.equals(c.dataset)
    assert set(pl.from_arrow(a.seed_used).get_column("sample_id")) == set(
        df.get_column("sample_id")
    )
    short = _d1(t["seed_samples"], 10_000, 0)
    assert short.metrics["shortfall"] == 10_000 - 600


def test_warm_start_reserved_samples_never_enter_d1_seed_new_or_static_reuse():
    t = synth()
    ids = [f"s{i}" for i in range(250)]  # pool samples (not in synth's D_j)
    reserved = rows_to_table([{"sample_id": s, "used_iter": 0} for s in ids], SEED_USED)
    res = _d1(t["seed_samples"], 150, 3, reserved=reserved)
    d1 = set(pl.from_arrow(res.dataset).get_column("sample_id"))
    used = pl.from_arrow(res.seed_used)
    assert not d1 & set(ids) and len(d1) == 150
    assert res.metrics["reserved_warmstart"] == 250 and res.metrics["seed_pool_left"] == 200
    assert set(used.filter(pl.col("used_iter") == 0)["sample_id"]) == set(ids)
    # Seed-new draws from the unused pool only; the static arm re-uses D_j samples, not these
    for j in (2, 3, 4):
        st = compose_static(t["seed_samples"], res.seed_used, next_j=j, size=300, seed=0)
        assert not set(pl.from_arrow(st.dataset)["sample_id"]) & set(ids)
    tables = {**t, "seed_used": res.seed_used}
    nxt = compose_next(**tables, next_j=2, params=LoopParams(dataset_size=200), seed=0)
    seed_new = pl.from_arrow(nxt.dataset).filter(pl.col("split") == "SEED_NEW")
    assert seed_new.height > 0 and not set(seed_new["sample_id"]) & set(ids)


def test_compose_none_adds_up_and_follows_alg1():
    t = synth()
    df, m, used = run(t, dataset_size=200)
    assert df.height == 200 == m["total"]
    assert sum(m["splits"].values()) == 200
    for split in ("ES", "EE", "HPPL", "SEED_NEW"):
        assert m["splits"][split] > 0, split
    # Seed-new: scheduled count, from never-used seed samples only.
    assert (
        m["splits"]["SEED_NEW"]
        == seed_new_target(LoopParams(dataset_size=200), 2)
        == round(200 * 4 / 13)
    )
    assert all(s.startswith("s") for s in ids(df, "SEED_NEW"))
    assert set(used.get_column("sample_id")) == {f"d{i}" for i in range(200)} | ids(df, "SEED_NEW")
    # ES only MR/LR, HPPL never DROPPED/KEPT_OUT, EE only accepted children.
    assert ids(df, "ES") <= outcome_ids(t, "MR", "LR")
    assert not (ids(df, "HPPL") & outcome_ids(t, "DROPPED", "KEPT_OUT", "MR", "LR"))
    exp = pl.from_arrow(t["expansions"])
    assert ids(df, "EE") <= set(exp.filter(pl.col("accepted")).get_column("sample_id"))
    assert df.get_column("sample_id").n_unique() == 200 and set(df.get_column("copy")) == {0}
    # HPPL keeps the highest PPL first: every kept mastered HPPL row beats every dropped one.
    assert m["trimmed"]["ES"] + m["trimmed"]["EE"] + m["trimmed"]["HPPL"] > 0


def test_label_replacement_keeps_history():
    t = synth()
    df, m, _ = run(t, dataset_size=200, compose={"priority": ["ES", "HPPL", "EE"]})
    lr = outcome_ids(t, "LR")
    rows = df.filter(pl.col("sample_id").is_in(list(lr)))
    assert rows.height == m["es_lr"] > 0
    for r in rows.iter_rows(named=True):
        i = r["sample_id"][1:]
        assert r["label"] == f'{{"calls":[],"text":"new{i}"}}'
        assert r["label_hash"] == f"nh{i}" and r["label_rev"] == 1 and r["origin"] == "relabel"
    v = pl.from_arrow(t["verdicts"]).filter(pl.col("outcome") == "LR")
    assert v.get_column("label_before").str.contains('"text":"d').all()  # old label kept
    mr = df.filter(pl.col("sample_id").is_in(list(outcome_ids(t, "MR"))))
    assert (mr.get_column("label_rev") == 0).all() and (mr.get_column("origin") == "seed").all()


@pytest.mark.parametrize(
    "ablation", ["none", "no_hppl", "no_jglv", "no_edde", "hppl_replace", "es_repeat"]
)
def test_every_ablation_matches_its_definition(ablation):
    t = synth()
    base, mb, _ = run(t, dataset_size=200)
    df, m, _ = run(t, dataset_size=200, ablation=ablation)
    assert df.height == 200
    splits = m["splits"]
    mismatched = set(pl.from_arrow(t["probe"]).filter(~pl.col("match")).get_column("sample_id"))
    mastered = set(pl.from_arrow(t["probe"]).filter(pl.col("match")).get_column("sample_id"))
    if ablation == "none":
        assert set(splits) == {"ES", "EE", "HPPL", "SEED_NEW"}
    elif ablation == "no_hppl":
        # Random mastered samples instead of the high-PPL ones, as many as HPPL had.
        assert "HPPL" not in splits and splits["MASTERED"] == mb["splits"]["HPPL"]
        assert ids(df, "MASTERED") <= mastered
        assert ids(df, "MASTERED") != ids(base, "HPPL")
    elif ablation == "no_jglv":
        # Every mismatch is a model error with its label kept: no relabel, no drop, no BOTH_CORRECT.
        assert ids(df, "ES") <= mismatched and m["es_lr"] == 0
        assert (df.get_column("origin") != "relabel").all()
        assert not ids(df, "HPPL") & mismatched
        assert m["available"]["ES"] == len(mismatched)
    elif ablation == "no_edde":
        assert "EE" not in splits
        assert m["available"]["EE"] == 0
    elif ablation == "hppl_replace":
        # EE slots go to as many extra high-PPL mastered samples.
        # (as many as there are: the rest of the EE slots is filled by Seed-new)
        assert "EE" not in splits
        n_extra = min(mb["splits"]["EE"], len(mastered - ids(base, "HPPL")))
        assert 0 < n_extra and splits["HPPL"] == mb["splits"]["HPPL"] + n_extra
        extra = ids(df, "HPPL") - ids(base, "HPPL")
        assert extra <= mastered and len(extra) == n_extra == m["ee_slots_substituted"]
        assert splits["SEED_NEW"] == mb["splits"]["SEED_NEW"] + mb["splits"]["EE"] - n_extra
        ppl = dict(pl.from_arrow(t["probe"]).select("sample_id", "ppl").iter_rows())
        left_out = mastered - ids(df, "HPPL")
        assert min(ppl[s] for s in extra) >= max((ppl[s] for s in left_out), default=0.0)
    elif ablation == "es_repeat":
        # EE slots go to duplicated error seeds.
        assert "EE" not in splits
        assert splits["ES"] == mb["splits"]["ES"] + mb["splits"]["EE"]
        es = df.filter(pl.col("split") == "ES")
        assert es.filter(pl.col("copy") > 0).height == mb["splits"]["EE"]
        assert set(es.filter(pl.col("copy") > 0).get_column("sample_id")) <= ids(base, "ES")
    if ablation in ("none", "no_hppl", "es_repeat"):
        assert splits["SEED_NEW"] == mb["splits"]["SEED_NEW"]


def test_overflow_trimming_rules():
    avail = {"ES": 100, "EE": 400, "HPPL": 30}
    order = ["ES", "EE", "HPPL"]
    assert allocate(avail, 200, order, 0.1, "priority") == {"ES": 100, "EE": 80, "HPPL": 20}
    assert allocate(avail, 200, ["HPPL", "EE", "ES"], 0.1, "priority") == {
        "ES": 20,
        "EE": 150,
        "HPPL": 30,
    }
    # proportional keeps the candidate mix; remainders by priority
    assert allocate(avail, 200, order, 0.1, "proportional") == {"ES": 38, "EE": 151, "HPPL": 11}
    assert allocate({"ES": 5, "EE": 1000, "HPPL": 1}, 10, order, 0.1, "proportional") == {
        "ES": 1,
        "EE": 8,
        "HPPL": 1,
    }
    for trim in ("priority", "proportional"):
        assert allocate({"ES": 5, "EE": 0, "HPPL": 1}, 200, order, 0.1, trim) == {
            "ES": 5,
            "EE": 0,
            "HPPL": 1,
        }
        assert sum(allocate(avail, 77, order, 0.1, trim).values()) == 77


def test_priority_trim_in_compose():
    t = synth()
    _, m, _ = run(t, dataset_size=200, compose={"trim": "priority", "min_share": 0.0})
    # ES first, then EE: HPPL gets nothing left
    assert m["selected"]["ES"] == m["available"]["ES"] and "HPPL" not in m["splits"]
    _, m, _ = run(t, dataset_size=200)  # proportional: same fraction everywhere
    frac = [m["selected"][s] / m["available"][s] for s in ("ES", "EE", "HPPL")]
    assert max(frac) - min(frac) < 0.05


def test_shortfall_fills_with_seed_new_then_repeats():
    t = synth(n=50, pool=100)
    df, m, used = run(t, dataset_size=200)
    assert df.height == 200
    assert m["splits"]["SEED_NEW"] == 100  # the whole pool: the schedule, then the fill
    assert m["seed_new_extra_fill"] == 100 - m["seed_new_scheduled"] > 0
    assert (
        m["repeat_fill"]
        == 200 - (m["selected"]["ES"] + m["selected"]["EE"] + m["selected"]["HPPL"] + 100)
        > 0
    )
    assert m["copies"] == m["repeat_fill"]
    assert (df.group_by("sample_id", "copy").len().get_column("len") == 1).all()


def test_seed_new_schedule_halves_and_never_reuses():
    p = LoopParams(dataset_size=18304)
    assert [seed_new_target(p, j) for j in (2, 3, 4)] == [5632, 2816, 1408]  # paper Table 3
    p = LoopParams(dataset_size=100, compose={"seed_new_schedule": [40, 10]})
    assert [seed_new_target(p, j) for j in (2, 3, 4)] == [40, 10, 10]
    p = LoopParams(dataset_size=100, compose={"seed_new": 7, "seed_new_schedule": [40]})
    assert seed_new_target(p, 2) == 7

    t = synth()
    r2 = compose_next(**t, next_j=2, params=LoopParams(dataset_size=200), seed=0)
    t3 = {**t, "seed_used": r2.seed_used}
    r3 = compose_next(**t3, next_j=3, params=LoopParams(dataset_size=200), seed=0)
    new2 = ids(pl.from_arrow(r2.dataset), "SEED_NEW")
    new3 = ids(pl.from_arrow(r3.dataset), "SEED_NEW")
    assert len(new3) == round(200 * 2 / 13) and not new2 & new3
    assert pl.from_arrow(r3.seed_used).height == 200 + len(new2) + len(new3)


def test_compose_is_deterministic():
    t = synth()
    a = compose_next(**t, next_j=2, params=LoopParams(dataset_size=200), seed=5)
    b = compose_next(**t, next_j=2, params=LoopParams(dataset_size=200), seed=5)
    assert a.dataset.equals(b.dataset) and a.metrics == b.metrics


def _params(**over):
    from pathlib import Path

    from looptool.params import Params, load_params

    raw = load_params(Path(__file__).parents[1] / "params.yaml").model_dump()
    raw["loop"]["dataset_size"] = 64
    raw["loop"]["compose"].update(seed_pool="auto", seed_new=None, seed_new_schedule=None)
    raw["loop"]["compose"].update(seed_new_start_fraction=4 / 13, seed_new_decay=0.5)
    raw["iterations"] = {
        str(j): {"j": j, "prev": j - 1, "next": j + 1, "overrides": {}} for j in (1, 2, 3, 4)
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict) and key != "iterations":
            for k, v in value.items():
                if isinstance(v, dict):
                    raw[key][k].update(v)
                else:
                    raw[key][k] = v
        else:
            raw[key] = value
    return Params.model_validate(raw)


def test_seed_pool_auto_is_d1_plus_the_seed_new_schedule():
    p = _params()
    # 64 + round(64 * 4/13 * 0.5^k) for D_2..D_4 = 64 + 20 + 10 + 5 (paper: 18,304 + ...)
    assert seed_pool_target(p) == 64 + 20 + 10 + 5
    its = p.model_dump()["iterations"]
    its["3"]["overrides"] = {"loop.compose.seed_new": 7}  # compose@3 builds D_4
    q = _params(iterations=its)
    assert seed_pool_target(q) == 64 + 20 + 10 + 7
    assert seed_pool_target(_params(loop={"dataset_size": 64, "compose": {"seed_pool": 80}})) == 80
    assert seed_pool_target(_params(loop={"compose": {"seed_pool": "all"}})) is None
    with pytest.raises(ValueError):
        _params(loop={"compose": {"seed_pool": 0}})


def test_the_pool_is_fixed_and_shared_by_the_loop_and_the_static_arm():
    t = synth()
    seeds = t["seed_samples"]
    pool = draw_seed_pool(seeds, size=99, seed=3)
    assert pool.num_rows == 99 and pool.equals(draw_seed_pool(seeds, size=99, seed=3))
    # a bigger pool extends the same order: D_1 does not depend on the pool size
    assert draw_seed_pool(seeds, size=150, seed=3).slice(0, 99).equals(pool)
    ids = set(pool.column("sample_id").to_pylist())
    d1 = init_dataset(seeds, pool, size=64)
    assert set(pl.from_arrow(d1.dataset)["sample_id"]) <= ids
    # the loop's Seed-new draws only from the pool (the stage passes in_pool(seeds, pool))
    tables = {**t, "seed_samples": in_pool(seeds, pool), "seed_used": d1.seed_used}
    nxt = compose_next(**tables, next_j=2, params=LoopParams(dataset_size=200), seed=0)
    seed_new = pl.from_arrow(nxt.dataset).filter(pl.col("split") == "SEED_NEW")
    assert seed_new.height > 0 and set(seed_new["sample_id"]) <= ids
    assert nxt.metrics["available"]["SEED_NEW_POOL"] <= 99 - 64  # minus D_j's own
    # the static arm draws only from the pool too
    used = d1.seed_used
    for j in (2, 3, 4):
        st = compose_static_pool(seeds, pool, used, next_j=j, size=64)
        assert set(pl.from_arrow(st.dataset)["sample_id"]) <= ids
        used = st.seed_used


def test_static_pool_cycles_fresh_before_repeated():
    t = synth()
    seeds = t["seed_samples"]
    pool = draw_seed_pool(seeds, size=99, seed=3)
    order = pool.column("sample_id").to_pylist()
    d1 = init_dataset(seeds, pool, size=64)
    assert sorted(pl.from_arrow(d1.dataset)["sample_id"]) == sorted(order[:64])
    seen = {s: 1 for s in order[:64]}
    used = d1.seed_used
    for j in (2, 3, 4):
        st = compose_static_pool(seeds, pool, used, next_j=j, size=64)
        ids = pl.from_arrow(st.dataset)["sample_id"].to_list()
        start = ((j - 1) * 64) % 99
        assert sorted(ids) == sorted(order[(start + i) % 99] for i in range(64))
        # fresh before repeated: no sample is seen k+1 times while another has k < max - 1
        for s in ids:
            seen[s] = seen.get(s, 0) + 1
        counts = [seen.get(s, 0) for s in order]
        assert max(counts) - min(counts) <= 1
        used = st.seed_used
    assert st.metrics["pool_size"] == 99 and st.metrics["seed_fresh"] == 0
    # 4 x 64 = 256 draws from 99: every sample seen 2 or 3 times (the paper's ~2.6 passes)
    assert sum(seen.values()) == 256 and set(seen.values()) == {2, 3}
    # a pool smaller than |D| repeats inside one D_j, marked as copies
    small = draw_seed_pool(seeds, size=10, seed=3)
    st = compose_static_pool(seeds, small, SEED_USED.empty_table(), next_j=2, size=25)
    df = pl.from_arrow(st.dataset)
    assert df.height == 25 and df["sample_id"].n_unique() == 10
    assert (df["copy"] > 0).sum() == 15


def test_static_baseline_uses_seed_only():
    t = synth(n=50, pool=100)
    r = compose_static(t["seed_samples"], t["seed_used"], next_j=2, size=120, seed=0)
    df = pl.from_arrow(r.dataset)
    assert df.height == 120 and set(df.get_column("split")) == {"SEED"}
    assert r.metrics["seed_fresh"] == 100 and r.metrics["seed_reused"] == 20


# --- one full iteration through the stage entry points (tiny hf policy + judge, template EDDE)


def _seed_samples(n: int) -> pa.Table:
    from looptool.core.tables import sample_to_row
    from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec

    weather = ToolSpec.from_any(
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    )
    book = ToolSpec.from_any(
        {
            "name": "book_table",
            "description": "Book a table.",
            "parameters": {
                "type": "object",
                "properties": {"restaurant": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["restaurant", "people"],
            },
        }
    )
    cities, places = ["Paris", "Oslo", "Rome", "Quito", "Perth"], ["Luigi", "Blue Fin", "Casa Pepe"]
    rows = []
    for i in range(n):
        if i % 3 == 0:
            c = cities[i % 5]
            s = Sample(
                tools=[weather, book],
                context=[Message(role="user", content=f"Weather in {c}? ({i})")],
                label=Label(calls=[ToolCall(name="get_weather", arguments={"city": c})]),
            )
        elif i % 3 == 1:
            p, k = places[i % 3], 2 + i % 6
            s = Sample(
                tools=[book, weather],
                context=[Message(role="user", content=f"Book {p} for {k} people ({i}).")],
                label=Label(
                    calls=[ToolCall(name="book_table", arguments={"restaurant": p, "people": k})]
                ),
            )
        else:
            s = Sample(
                tools=[weather],
                context=[Message(role="user", content=f"Sing me song {i}")],
                label=Label(text="I can only look up the weather."),
            )
        rows.append(sample_to_row(s))
    return rows_to_table(rows, SAMPLES)


def test_one_full_iteration_through_the_stages(tmp_path, tiny_model_dir, monkeypatch):
    import json
    from pathlib import Path

    import yaml

    from looptool.store.io import read_parquet, write_parquet_atomic

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOPTOOL_CACHE_DIR", raising=False)
    write_parquet_atomic("data/seed/samples.parquet", _seed_samples(150))
    write_parquet_atomic("data/iter_0/warmstart_samples.parquet", SEED_USED.empty_table())
    write_parquet_atomic("data/seed/heldout.parquet", SAMPLES.empty_table())
    (tmp_path / "data/iter_1").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data/iter_1/model").symlink_to(tiny_model_dir, target_is_directory=True)
    hf = {"backend": "hf", "model": str(tiny_model_dir), "batch_size": 16}
    params = {
        "project": {"seed": 0, "cache_dir": str(tmp_path / "cache")},
        "engines": {"policy": hf, "judge": hf, "generator": {"backend": "template"}},
        "loop": {
            "dataset_size": 48,
            "probe": {"max_tokens": 32},
            "judge": {"analysis_max_tokens": 0},
            # auto with J = 1 is |D_1| alone (D_2 is never trained): no Seed-new to draw
            "compose": {"seed_pool": 80},
        },
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))

    import stages.compose
    import stages.expand
    import stages.init_dataset
    import stages.judge
    import stages.probe

    stages.init_dataset.main([])
    it = ["--j", "1", "--prev", "0", "--next", "2"]
    for stage in (stages.probe, stages.judge, stages.expand, stages.compose):
        stage.main(it)

    d2 = pl.from_arrow(read_parquet("data/iter_2/dataset.parquet"))
    m = json.loads(Path("data/iter_1/compose_metrics.json").read_text())
    assert d2.height == 48 == m["total"] == sum(m["splits"].values())
    judge_m = json.loads(Path("data/iter_1/judge_metrics.json").read_text())
    probe_m = json.loads(Path("data/iter_1/probe_metrics.json").read_text())
    # The random tiny model masters nothing (its empty answers no longer match no-call
    # labels), so D_2 has no HPPL share; HPPL selection is covered in test_probe.
    assert probe_m["mastered"] == probe_m["hppl"] == m["splits"].get("HPPL", 0) == 0
    assert {s: n > 0 for s, n in m["splits"].items() if s != "HPPL"} == {
        "ES": True,
        "EE": True,
        "SEED_NEW": True,
    }
    assert dict(d2.group_by("split").len().iter_rows()) == m["splits"]
    assert judge_m["n_mismatch"] == probe_m["mismatch"] > 0
    assert json.loads(Path("data/iter_1/expand_metrics.json").read_text())["accepted"] > 0
    used = pl.from_arrow(read_parquet("data/iter_2/seed_used.parquet"))
    assert used.height == 48 + m["splits"]["SEED_NEW"]


def test_hppl_replace_takes_the_next_highest_ppl():
    t = synth(children=1, accepted=1)
    base, mb, _ = run(t, dataset_size=100)
    df, m, _ = run(t, dataset_size=100, ablation="hppl_replace")
    mastered = set(pl.from_arrow(t["probe"]).filter(pl.col("match")).get_column("sample_id"))
    ppl = dict(pl.from_arrow(t["probe"]).select("sample_id", "ppl").iter_rows())
    extra = ids(df, "HPPL") - ids(base, "HPPL")
    left_out = mastered - ids(df, "HPPL")
    assert len(extra) == mb["splits"]["EE"] == m["ee_slots_substituted"] > 0 and left_out
    assert min(ppl[s] for s in extra) >= max(ppl[s] for s in left_out)


def test_static_baseline_skips_the_loop_data_stages(tmp_path, monkeypatch):
    """The static arm draws D_{j+1} from the seed pool: probe/judge/expand do no work."""
    import json
    from pathlib import Path

    import yaml

    from looptool.core.tables import EXPANSIONS, PROBE, VERDICTS
    from looptool.store.io import read_parquet

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    hf = {"backend": "hf", "model": "data/no_such_model"}
    params = {
        "engines": {"policy": hf, "judge": hf, "generator": {"backend": "template"}},
        "eval": {"static_baseline": True},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    import stages.expand
    import stages.judge
    import stages.probe

    it = ["--j", "1", "--prev", "0", "--next", "2"]
    for stage, table, schema, metrics in (
        (stages.probe, "probe", PROBE, "probe_metrics"),
        (stages.judge, "verdicts", VERDICTS, "judge_metrics"),
        (stages.expand, "expansions", EXPANSIONS, "expand_metrics"),
    ):
        stage.main(it)  # no dataset, model or engine needed
        out = read_parquet(f"data/iter_1/{table}.parquet")
        assert out.num_rows == 0 and out.schema.equals(schema)
        m = json.loads(Path(f"data/iter_1/{metrics}.json").read_text())
        assert m["skipped"].startswith("eval.static_baseline")


def test_hppl_trim_keeps_the_kind_groups_in_proportion():
    """30 HPPL candidates (20 refusals with high PPL, 10 calls with low PPL) for 6 slots."""
    kinds = ["irrelevant"] * 20 + ["single"] * 10
    ds = rows_to_table(
        [_row(f"d{i}", kind=k, split="SEED", iter=1, copy=0) for i, k in enumerate(kinds)],
        DATASET,
    )
    probe = rows_to_table(
        [
            {"sample_id": f"d{i}", "iter": 1, "kind": k, "raw_text": "", "match": True,
             "match_reason": "match", "ppl": (50.0 if k == "irrelevant" else 1.0) + i,
             "n_tokens": 1, "hppl": True}
            for i, k in enumerate(kinds)
        ],
        PROBE,
    )  # fmt: skip
    used = rows_to_table([{"sample_id": f"d{i}", "used_iter": 1} for i in range(30)], SEED_USED)
    tables = {
        "dataset": ds,
        "probe": probe,
        "verdicts": VERDICTS.empty_table(),
        "expansions": EXPANSIONS.empty_table(),
        "seed_samples": ds.select(SAMPLES.names).cast(SAMPLES),
        "seed_used": used,
    }
    loop = {"dataset_size": 6, "compose": {"seed_new": 0}}
    by_kind, _, _ = run(tables, **loop)
    assert sorted(by_kind.get_column("kind")) == ["irrelevant"] * 4 + ["single"] * 2
    # within each group the highest PPL is kept
    assert ids(by_kind, "HPPL") == {"d19", "d18", "d17", "d16", "d29", "d28"}
    pooled, _, _ = run(tables, **loop, probe={"hppl_groups": "pooled"})
    assert set(pooled.get_column("kind")) == {"irrelevant"}
    calls, _, _ = run(tables, **loop, probe={"hppl_groups": "calls_only"})
    assert sorted(calls.get_column("kind")) == ["single"] * 6


def test_init_dataset_stage_says_when_the_warm_start_took_every_seed_sample(tmp_path, monkeypatch):
    from pathlib import Path

    import yaml

    from looptool.store.io import write_parquet_atomic

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    seeds = _seed_samples(20)
    write_parquet_atomic("data/seed/samples.parquet", seeds)
    ids = pl.from_arrow(seeds)["sample_id"].to_list()
    write_parquet_atomic(
        "data/iter_0/warmstart_samples.parquet",
        rows_to_table([{"sample_id": s, "used_iter": 0} for s in ids], SEED_USED),
    )
    hf = {"backend": "hf", "model": "data/m"}
    params = {"engines": {"policy": hf, "judge": hf, "generator": {"backend": "template"}},
              "warmstart": {"enabled": True, "max_samples": 600},
              "iterations": {"1": {"j": 1, "prev": 0, "next": 2}}}  # fmt: skip
    Path("params.yaml").write_text(yaml.safe_dump(params))
    import stages.init_dataset

    with pytest.raises(SystemExit) as exc:
        stages.init_dataset.main([])
    assert "no seed sample left for D_1" in str(exc.value) and "reserved 20" in str(exc.value)
