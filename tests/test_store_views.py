"""DuckDB views and `looptool sql`, cross-checked against Polars reads of the same files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.store.views import VIEW_NAMES, Layout, VersionError, connect, resolve_version


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    build(root, iters=2)  # D1..D3; probe/verdicts/expansions for iterations 1, 2 only
    return root


def _files(root: Path, name: str) -> pl.DataFrame:
    """All data/iter_*/<name> files with the directory's j, read by Polars."""
    frames = [
        pl.read_parquet(p).with_columns(pl.lit(int(p.parent.name[5:]), pl.Int32).alias("dir_j"))
        for p in sorted((root / "data").glob(f"iter_*/{name}"))
    ]
    return pl.concat(frames, how="diagonal_relaxed")


@pytest.mark.parametrize(
    "view,file",
    [
        ("datasets", "dataset.parquet"),
        ("probe", "probe.parquet"),
        ("verdicts", "verdicts.parquet"),
        ("expansions", "expansions.parquet"),
    ],
)
def test_iteration_views_match_files(project: Path, view: str, file: str) -> None:
    con = connect(project)
    got = con.sql(
        f"SELECT iter, count(*)::BIGINT AS n FROM {view} GROUP BY iter ORDER BY iter"
    ).pl()
    want = _files(project, file).group_by(iter="dir_j").agg(n=pl.len().cast(pl.Int64)).sort("iter")
    assert got.to_dicts() == want.to_dicts()
    assert got.height >= 2


def test_unbuilt_iteration_is_absent_not_an_error(project: Path) -> None:
    con = connect(project)
    # iteration 3 has its dataset (compose@2 output) but no probe yet
    assert con.sql("SELECT max(iter) FROM datasets").fetchall() == [(3,)]
    assert con.sql("SELECT max(iter) FROM probe").fetchall() == [(2,)]


def test_samples_view_versions(project: Path) -> None:
    con = connect(project)
    got = dict(con.sql("SELECT version, count(*)::BIGINT FROM samples GROUP BY ALL").fetchall())
    want = {"seed": pl.read_parquet(project / "data/seed/samples.parquet").height}
    want["heldout"] = pl.read_parquet(project / "data/seed/heldout.parquet").height
    for j in (1, 2, 3):
        want[f"D{j}"] = pl.read_parquet(project / f"data/iter_{j}/dataset.parquet").height
    assert got == want


def test_verdict_aggregate_and_join(project: Path) -> None:
    con = connect(project)
    got = con.sql(
        "SELECT v.iter, v.verdict, count(*)::BIGINT AS n, avg(p.ppl) AS ppl "
        "FROM verdicts v JOIN probe p USING (iter, sample_id) GROUP BY ALL ORDER BY ALL"
    ).pl()
    v = _files(project, "verdicts.parquet").select("sample_id", "verdict", iter="dir_j")
    p = _files(project, "probe.parquet").select("sample_id", "ppl", iter="dir_j")
    want = (
        v.join(p, on=["iter", "sample_id"])
        .group_by("iter", "verdict")
        .agg(n=pl.len().cast(pl.Int64), ppl=pl.col("ppl").mean())
        .sort("iter", "verdict")
    )
    assert (
        got.select("iter", "verdict", "n").to_dicts()
        == want.select("iter", "verdict", "n").to_dicts()
    )
    assert got["ppl"].to_list() == pytest.approx(want["ppl"].to_list())


def test_metrics_view_flattens_json(project: Path) -> None:
    con = connect(project)
    rows = con.sql(
        "SELECT iter, value FROM metrics WHERE stage = 'eval' AND key = 'heldout.accuracy' "
        "ORDER BY iter"
    ).fetchall()
    want = [
        (j, json.loads((project / f"data/iter_{j}/eval.json").read_text())["heldout"]["accuracy"])
        for j in (1, 2)
    ]
    assert rows == want
    seed = con.sql("SELECT value FROM metrics WHERE stage = 'seed' AND key = 'apis.n'").fetchall()
    assert seed == [(3.0,)]


def test_empty_project_has_typed_empty_views(tmp_path: Path) -> None:
    con = connect(tmp_path)
    for view in VIEW_NAMES:
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]
    cols = {r[0]: r[1] for r in con.sql("DESCRIBE verdicts").fetchall()}
    assert cols["iter"] == "INTEGER" and cols["verdict"] == "VARCHAR"


def test_resolve_version(project: Path) -> None:
    layout = Layout.at(project)
    assert resolve_version(layout, "d2").path == project / "data/iter_2/dataset.parquet"
    assert resolve_version(layout, "seed").iter == 0
    with pytest.raises(VersionError, match="built versions: seed, heldout, D1, D2, D3"):
        resolve_version(layout, "D7")
    with pytest.raises(VersionError, match="unknown version"):
        resolve_version(layout, "latest")


def test_sql_cli_prints_table_and_writes_files(project: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    q = "SELECT iter, split, count(*) AS n FROM datasets GROUP BY ALL ORDER BY ALL"
    res = runner.invoke(main, ["sql", q, "--root", str(project)])
    assert res.exit_code == 0, res.output
    assert "SEED_NEW" in res.output
    csv, pq = tmp_path / "out.csv", tmp_path / "out.parquet"
    res = runner.invoke(
        main, ["sql", q, "--root", str(project), "--csv", str(csv), "--parquet", str(pq)]
    )
    assert res.exit_code == 0, res.output
    want = (
        _files(project, "dataset.parquet")
        .group_by(iter="dir_j", split="split")
        .agg(n=pl.len().cast(pl.Int64))
        .sort("iter", "split")
    )
    for got in (pl.read_csv(csv), pl.read_parquet(pq)):
        assert got.cast({"iter": pl.Int32, "n": pl.Int64}).to_dicts() == want.to_dicts()


def test_sql_cli_errors_and_view_listing(project: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["sql", "SELECT nope FROM verdicts", "--root", str(project)])
    assert res.exit_code == 1
    assert "query failed" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["sql", "--root", str(project)])
    assert res.exit_code == 0
    for view in VIEW_NAMES:
        assert f"{view}:" in res.output
    res = runner.invoke(
        main, ["sql", "SELECT * FROM samples", "--root", str(project), "--max-rows", "3"]
    )
    assert res.exit_code == 0 and "first 3 rows shown" in res.output


def test_relative_paths_resolve_against_root(project: Path, tmp_path: Path, monkeypatch) -> None:
    # DuckDB checks a relative path against the working directory: `looptool sql` runs in
    # the root, so 'data/...' is the root's; a connection opened elsewhere refuses it
    # (it would otherwise allow the working directory's data/, issue 27)
    monkeypatch.chdir(tmp_path)
    query = "SELECT count(*) AS n FROM 'data/seed/heldout.parquet'"
    res = CliRunner().invoke(main, ["sql", query, "--root", str(project)])
    assert res.exit_code == 0, res.output
    n = pl.read_parquet(project / "data/seed/heldout.parquet").height
    assert f" {n} " in res.output.replace("│", " "), res.output
    with pytest.raises(duckdb.PermissionException):
        connect(project).sql(query).fetchall()
