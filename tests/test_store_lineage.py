"""`looptool lineage`: a sample's history, cross-checked against Polars lookups."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.store.lineage import LineageError, lineage


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    build(root, iters=2)
    return root


def _all(root: Path, name: str) -> pl.DataFrame:
    return pl.concat(
        [
            pl.read_parquet(p).with_columns(iter=pl.lit(int(p.parent.name[5:]), pl.Int32))
            for p in sorted((root / "data").glob(f"iter_*/{name}"))
        ],
        how="diagonal_relaxed",
    )


def test_error_seed_timeline_and_children(project: Path) -> None:
    ver = _all(project, "verdicts.parquet")
    exp = _all(project, "expansions.parquet")
    sid = ver.filter(pl.col("verdict") == "PRED_WRONG", pl.col("iter") == 1)["sample_id"][0]
    lin = lineage(sid, root=project)

    ds = _all(project, "dataset.parquet").filter(pl.col("sample_id") == sid)
    want_splits = (
        ds.group_by("iter")
        .agg(pl.col("split").unique().sort().str.join("+"), copies=pl.len().cast(pl.Int64))
        .sort("iter")
    )
    got = lin.timeline.filter(pl.col("split").is_not_null()).select("iter", "split", "copies")
    assert got.to_dicts() == want_splits.to_dicts()

    probe = _all(project, "probe.parquet").filter(pl.col("sample_id") == sid).sort("iter")
    t = lin.timeline.join(probe.select("iter", p_match="match", p_ppl="ppl"), on="iter")
    assert t.height == probe.height
    assert (t["match"] == t["p_match"]).all() and (t["ppl"] == t["p_ppl"]).all()

    mine = ver.filter(pl.col("sample_id") == sid).sort("iter")
    t = lin.timeline.join(mine.select("iter", v="verdict", o="outcome"), on="iter")
    assert (
        t.height == mine.height
        and (t["verdict"] == t["v"]).all()
        and (t["outcome"] == t["o"]).all()
    )

    kids = exp.filter(pl.col("parent_id") == sid)
    assert sorted(lin.children["child_id"]) == sorted(kids["sample_id"])
    assert lin.children.filter(~pl.col("accepted"))["reject_reason"].null_count() == 0
    accepted = set(kids.filter("accepted")["sample_id"])
    depth1 = set(lin.descendants.filter(pl.col("depth") == 1)["sample_id"])
    assert depth1 == accepted
    assert lin.first_seen is not None and lin.first_seen["version"] == "seed"


def test_relabeled_sample_has_two_revisions(project: Path) -> None:
    ver = _all(project, "verdicts.parquet")
    row = ver.filter(pl.col("verdict") == "LABEL_WRONG").sort("iter").row(0, named=True)
    lin = lineage(row["sample_id"], root=project)
    labels = lin.labels.sort("label_rev")
    assert labels["label_rev"].to_list()[:2] == [0, 1]
    assert labels["label"][0] == row["label_before"]
    assert row["label_after"] in labels["label"].to_list()
    assert lin.timeline.filter(pl.col("iter") == row["iter"])["relabeled"].to_list() == [True]


def test_edde_child_knows_its_ancestors(project: Path) -> None:
    exp = _all(project, "expansions.parquet").filter("accepted")
    # a child expanded again at iteration 2 has a parent and a grandparent
    grand = exp.filter(pl.col("iter") == 2).join(
        exp.filter(pl.col("iter") == 1).select("sample_id", gp="parent_id"),
        left_on="parent_id",
        right_on="sample_id",
    )
    assert grand.height > 0, "synthetic history should contain a second-generation child"
    r = grand.row(0, named=True)
    lin = lineage(r["sample_id"], root=project)
    assert lin.ancestors.to_dicts() == [
        {"sample_id": r["parent_id"], "depth": 1},
        {"sample_id": r["gp"], "depth": 2},
    ]
    assert lin.expanded_from is not None and lin.expanded_from["parent_id"] == r["parent_id"]
    up = lineage(r["gp"], root=project)
    assert r["sample_id"] in up.descendants.filter(pl.col("depth") == 2)["sample_id"].to_list()


def test_prefix_unknown_and_cli(project: Path) -> None:
    sid = pl.read_parquet(project / "data/iter_1/dataset.parquet")["sample_id"][0]
    assert lineage(sid[:10], root=project).sample_id == sid
    with pytest.raises(LineageError, match="not found"):
        lineage("ffffffffffffffff_nope", root=project)
    runner = CliRunner()
    res = runner.invoke(main, ["lineage", sid, "--json", "--root", str(project)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["sample_id"] == sid
    res = runner.invoke(main, ["lineage", "zzzzzz", "--root", str(project)])
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(main, ["lineage", sid, "--root", str(project)])
    assert res.exit_code == 0 and "timeline" in res.output and "label revisions" in res.output
