"""`looptool diff`: counts and examples cross-checked against independent computations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.core.tables import DATASET, rows_to_table
from looptool.store.diff import diff_versions, format_diff
from looptool.store.io import write_parquet_atomic


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    build(root, iters=2)
    return root


def _per_sample(path: Path) -> pl.DataFrame:
    """Polars reference: one row per sample_id (latest label, joined split set)."""
    df = pl.read_parquet(path)
    if "split" not in df.columns:
        df = df.with_columns(split=pl.lit(None, pl.String))
    return df.group_by("sample_id").agg(
        pl.col("label_hash").sort_by("label_rev").last(),
        pl.col("label").sort_by("label_rev").last(),
        pl.col("split").drop_nulls().unique().sort().str.join("+"),
    )


@pytest.mark.parametrize("a,b", [("D1", "D2"), ("D2", "D3"), ("D1", "D3")])
def test_diff_matches_polars(project: Path, a: str, b: str) -> None:
    pa_, pb = (project / f"data/iter_{v[1:]}/dataset.parquet" for v in (a, b))
    da, db = _per_sample(pa_), _per_sample(pb)
    added = db.join(da, on="sample_id", how="anti")
    removed = da.join(db, on="sample_id", how="anti")
    common = da.join(db, on="sample_id", suffix="_b")
    relabeled = common.filter(pl.col("label_hash") != pl.col("label_hash_b"))
    moved = common.filter(pl.col("split") != pl.col("split_b"))

    d = diff_versions(a, b, root=project, examples=100)
    c = d.counts
    assert c["rows_a"] == pl.read_parquet(pa_).height and c["rows_b"] == pl.read_parquet(pb).height
    assert (c["samples_a"], c["samples_b"]) == (da.height, db.height)
    assert c["added"] == added.height and c["removed"] == removed.height
    assert c["relabeled"] == relabeled.height and c["split_moved"] == moved.height
    changed = common.filter(
        (pl.col("label_hash") != pl.col("label_hash_b")) | (pl.col("split") != pl.col("split_b"))
    )
    assert c["unchanged"] == common.height - changed.height
    # examples are complete (limit 100 > counts) and exactly the expected ids
    assert set(d.examples["added"]["sample_id"]) == set(added["sample_id"])
    assert set(d.examples["removed"]["sample_id"]) == set(removed["sample_id"])
    assert set(d.examples["split_moved"]["sample_id"]) == set(moved["sample_id"])
    rel = d.examples["relabeled"].join(relabeled, on="sample_id")
    assert rel.height == relabeled.height
    assert (rel["old_label"] == rel["label"]).all() and (rel["new_label"] == rel["label_b"]).all()
    # the split-move matrix sums to the moved count and matches a Polars group-by
    want = moved.group_by(from_split="split", to_split="split_b").agg(n=pl.len().cast(pl.Int64))
    got = d.split_moves.sort("from_split", "to_split")
    assert got.to_dicts() == want.sort("from_split", "to_split").to_dicts()
    assert d.added_by["n"].sum() == added.height


def test_synthetic_history_has_every_category(project: Path) -> None:
    d = diff_versions("D1", "D2", root=project, examples=3)
    assert all(d.counts[k] > 0 for k in ("added", "removed", "relabeled", "split_moved"))
    assert d.examples["relabeled"]["new_rev"].to_list() == [1] * d.examples["relabeled"].height
    text = format_diff(d)
    assert "relabeled" in text and "SEED" in text and "ES" in text


def test_seed_to_d1_has_no_split_moves(project: Path) -> None:
    d = diff_versions("seed", "D1", root=project)
    seed_n = pl.read_parquet(project / "data/seed/samples.parquet").height
    d1_n = pl.read_parquet(project / "data/iter_1/dataset.parquet").height
    assert d.counts["split_moved"] == 0 and d.counts["added"] == 0
    assert d.counts["removed"] == seed_n - d1_n and d.counts["unchanged"] == d1_n


def test_random_versions_against_naive_sets(tmp_path: Path) -> None:
    """Random splits, relabels and repeats; reference computed with plain sets/dicts."""
    rng = random.Random(7)
    splits = ["ES", "EE", "HPPL", "SEED_NEW"]

    def version(ids: list[str], j: int) -> tuple[list[dict], dict]:
        rows, ref = [], {}
        for sid in ids:
            h = f"h{rng.randint(0, 1)}"
            ss = rng.sample(splits, rng.choice([1, 1, 1, 2]))
            for k, s in enumerate(ss):
                rows.append({"sample_id": sid, "tools": "[]", "context": "[]", "label": h,
                             "label_hash": h, "label_rev": 0, "kind": "single", "origin": "seed",
                             "born_iter": 0, "split": s, "iter": j, "copy": k})  # fmt: skip
            ref[sid] = (h, "+".join(sorted(ss)))
        return rows, ref

    pool = [f"s{i:03d}" for i in range(300)]
    rows_a, ref_a = version(rng.sample(pool, 200), 1)
    rows_b, ref_b = version(rng.sample(pool, 180), 2)
    write_parquet_atomic(tmp_path / "a.parquet", rows_to_table(rows_a, DATASET))
    write_parquet_atomic(tmp_path / "b.parquet", rows_to_table(rows_b, DATASET))
    d = diff_versions("a.parquet", "b.parquet", root=tmp_path, examples=0)
    common = ref_a.keys() & ref_b.keys()
    assert d.counts["added"] == len(ref_b.keys() - ref_a.keys())
    assert d.counts["removed"] == len(ref_a.keys() - ref_b.keys())
    assert d.counts["relabeled"] == sum(ref_a[s][0] != ref_b[s][0] for s in common)
    assert d.counts["split_moved"] == sum(ref_a[s][1] != ref_b[s][1] for s in common)
    assert d.counts["unchanged"] == sum(ref_a[s] == ref_b[s] for s in common)
    assert (d.counts["rows_a"], d.counts["samples_a"]) == (len(rows_a), len(ref_a))


def test_cli_json_and_errors(project: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["diff", "D2", "D3", "--json", "-n", "2", "--root", str(project)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["counts"] == diff_versions("D2", "D3", root=project).counts
    assert all(len(v) <= 2 for v in out["examples"].values())
    res = runner.invoke(main, ["diff", "D2", "D9", "--root", str(project)])
    assert res.exit_code == 1 and "D9" in res.output and "built versions" in res.output
    res = runner.invoke(main, ["diff", "D1", "D2", "--root", str(project)])
    assert res.exit_code == 0 and "split moves (from -> to)" in res.output
