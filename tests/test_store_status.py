"""`looptool status`: built outputs, split sizes and DVC staleness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.store.status import collect_status, format_status


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    build(tmp_path, iters=2)
    return tmp_path


def test_sizes_and_built_flags_without_dvc(project: Path) -> None:
    st = collect_status(project)
    assert not st.dvc.available and "not a DVC repository" in st.dvc.message
    assert st.seed == {
        "samples": pl.read_parquet(project / "data/seed/samples.parquet").height,
        "heldout": pl.read_parquet(project / "data/seed/heldout.parquet").height,
    }
    rows = {r["iter"]: r for r in st.iterations.to_dicts()}
    assert sorted(rows) == [1, 2, 3]
    for j in (1, 2, 3):
        counts = (
            pl.read_parquet(project / f"data/iter_{j}/dataset.parquet")
            .group_by("split")
            .len()
            .rows()
        )
        assert rows[j]["dataset"] == sum(n for _, n in counts)
        for split, n in counts:
            assert rows[j][split] == n
    assert rows[2]["probe"] and rows[2]["judge"] and rows[2]["expand"] and rows[2]["compose"]
    assert not rows[3]["probe"] and not rows[3]["eval"] and not rows[3]["compose"]
    assert rows[2]["heldout_acc"] == pytest.approx(0.5)
    text = format_status(st)
    assert "staleness unknown" in text and "SEED_NEW" in text


def test_declared_iterations_from_params(project: Path) -> None:
    items = {str(j): {"j": j, "prev": j - 1, "next": j + 1} for j in (1, 2, 3, 4)}
    (project / "params.yaml").write_text(yaml.safe_dump({"iterations": items}))
    st = collect_status(project, check_dvc=False)
    rows = {r["iter"]: r for r in st.iterations.to_dicts()}
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[4]["declared"] and rows[4]["dataset"] is None
    assert st.dvc.message.startswith("not checked")


def test_dvc_staleness_is_reported(project: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project, check=True)
    stages = {
        "stages": {
            "count": {
                "cmd": "python -c \"print('x')\" > data/count.txt",
                "deps": ["data/seed/samples.parquet"],
                "outs": ["data/count.txt"],
            }
        }
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump(stages))
    st = collect_status(project)
    assert st.dvc.available, st.dvc.message
    assert "count" in st.dvc.stale
    assert any("data/count.txt" in r for r in st.dvc.stale["count"])
    res = CliRunner().invoke(main, ["status", "--json", "--root", str(project)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["dvc"]["stale"]["count"] == st.dvc.stale["count"]
    assert [r["iter"] for r in out["iterations"]] == [1, 2, 3]


def test_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    res = CliRunner().invoke(main, ["status", "--no-dvc", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "no iterations declared or built" in res.output and "not built" in res.output


@pytest.mark.parametrize("cmd", [["status", "--no-dvc"], ["sql", "SELECT 1"], ["lineage", "abc"],
                                 ["diff", "seed", "D1"]])  # fmt: skip
def test_root_pointing_at_nothing_fails(tmp_path: Path, cmd: list[str]) -> None:
    for root, why in ((tmp_path, "not a LoopTool project"), (tmp_path / "nope", "no such folder")):
        res = CliRunner().invoke(main, [*cmd, "--root", str(root)])
        assert res.exit_code == 2 and why in res.output, res.output


def test_compact_view_fits_100_columns(project: Path) -> None:
    """Paper-sized counts, every split (incl. the no_hppl ablation's MASTERED), stale
    reasons with long paths: the default view stays within 100 columns; --wide does not."""
    st = collect_status(project, check_dvc=False)
    big = st.iterations.with_columns(
        pl.col(pl.Int64).exclude("iter") * 1000 + 18_304, MASTERED=pl.lit(18_304, pl.Int64)
    )
    st.iterations = pl.concat(
        [big.head(1).with_columns(iter=pl.lit(j, pl.Int64)) for j in range(1, 11)]
    )
    st.dvc.stale = {"train@10": [f"deps: data/iter_10/{'x' * 120}/dataset.parquet modified"]}
    text = format_status(st)
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "MASTERED" in text and "tpjxce" in text and "…" in text
    wide = format_status(st, wide=True)
    assert "compose" in wide and max(len(line) for line in wide.splitlines()) > 100
    res = CliRunner().invoke(main, ["status", "--no-dvc", "--wide", "--root", str(project)])
    assert res.exit_code == 0 and "declared" in res.output


def test_call_rate_and_collapse_guard_shown(project: Path) -> None:
    """The held-out tool-call rate per iteration (warm start, then each train@j's guard)."""
    (project / "data/iter_0").mkdir(exist_ok=True)
    (project / "data/iter_0/warmstart_metrics.json").write_text(
        json.dumps({"heldout": {"tool_call_rate": 0.76}})
    )
    for j, rate, ok, fitting in ((1, 0.96, True, 64), (2, 0.12, False, 27)):
        (project / f"data/iter_{j}/train_metrics.json").write_text(
            json.dumps(
                {
                    "guard": {"tool_call_rate": rate, "ok": ok},
                    "samples": 64,
                    "samples_fitting": fitting,
                }
            )
        )
    st = collect_status(project, check_dvc=False)
    rows = {r["iter"]: r for r in st.iterations.to_dicts()}
    assert rows[0]["calls"] == 0.76 and rows[1]["calls"] == 0.96 and rows[2]["guard_ok"] is False
    text = format_status(st)
    assert "0: 0.76, 1: 0.96, 2: 0.12 !" in text
    assert "COLLAPSE GUARD (!): train@2 left a tool-call rate of 0.12" in text
    assert "GUARD (!): train@1" not in text
    # rows the length limit left out of training: only iterations that lost some
    assert "over the length limit, not trained on (rows of the training table): 2: 37 of 64" in text
    assert max(len(line) for line in text.splitlines()) <= 100, [
        x for x in text.splitlines() if len(x) > 100
    ]


def test_seed_diversity_line(project: Path) -> None:
    """The seed stage's diversity metrics (data/seed/metrics.json) in one status line."""
    assert collect_status(project, check_dvc=False).seed_diversity is None
    diversity = {
        "functions": {"offered": 360, "called": 320},
        "user_messages": {"distinct": 1003, "openings": 461, "distinct_2": 0.3135,
                          "distinct_3": 0.5513},
        "chain_share": 0.126,
        "near_duplicate_share": 0.0,
        "edde_near_duplicate_share": 0.0123,
        "edde_threshold": 0.9,
    }  # fmt: skip
    (project / "data/seed/metrics.json").write_text(json.dumps({"diversity": diversity}))
    st = collect_status(project, check_dvc=False)
    assert st.to_json()["seed_diversity"] == diversity
    lines = format_status(st).splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("seed diversity"))
    assert lines[i : i + 2] == [
        "seed diversity: 320 functions, openings 461/1003, distinct-2/3 0.31/0.55, chain 0.13",
        "held-out near-duplicates of training: 0.00 (request wording), 0.01 (EDDE rule, "
        "Jaccard >= 0.9)",
    ]
    assert all(len(x) <= 100 for x in lines[i : i + 2])
