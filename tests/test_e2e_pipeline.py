"""End to end: `dvc repro` of the whole loop on a smoke profile in a temp copy of the repo,
then the version tools on the result, cross-checked against Polars; then a change to
iteration 2's knobs must rerun only iteration 2's stages, and a second repro is a no-op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from looptool.gpucheck import prepare

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small enough to finish in a few minutes on 2 cores; every stage still does real work.
SMOKE = {
    "seed.apis.n_draws": 80,
    "seed.dialogues.n_dialogues": 70,
    "loop.dataset_size": 40,
    "loop.probe.max_tokens": 48,
    "loop.expand.k": 2,
    "warmstart.max_steps": 12,
    "warmstart.max_samples": 48,  # its own split; D_1 and Seed-new draw from the rest
    "warmstart.heldout_check": 8,
    "train.max_samples": 8,
    "train.prompts_per_step": 2,
    "train.num_generations": 4,
    "train.micro_batch_size": 8,
    "train.epochs": 1.0,
    "train.max_completion_length": 48,
    "eval.max_tokens": 48,
    "eval.heldout_limit": 12,
    "eval.bfcl_per_category": 2,
    "eval.bfcl_categories": ["simple_python", "multiple", "parallel", "irrelevance"],
}


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree[key]
    assert leaf in tree, f"smoke profile sets unknown key {dotted}"
    tree[leaf] = value


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "LOOPTOOL_CACHE_DIR": str(cwd / ".cache" / "looptool"),
    }
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res


def _looptool(cwd: Path, *args: str) -> str:
    return _run([str(BIN / "looptool"), *args], cwd).stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "repo"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in SMOKE.items():
        _set(params, key, value)
    params["iterations"] = {
        str(j): {"j": j, "prev": j - 1, "next": j + 1, "overrides": {}} for j in (1, 2)
    }
    prepare(root, params)  # the scratch copy scripts/gpu_check.sh runs in, committed
    _run([str(BIN / "dvc"), "repro"], root, timeout=1500)
    return root


def test_pipeline_outputs(project: Path) -> None:
    for j in (1, 2):
        d = project / "data" / f"iter_{j}"
        for name in (
            "dataset.parquet",
            "probe.parquet",
            "verdicts.parquet",
            "expansions.parquet",
            "eval.json",
            "train_metrics.json",
        ):
            assert (d / name).is_file(), f"missing {d / name}"
        assert (d / "model" / "config.json").is_file()
        live = json.loads((d / "dvclive" / "metrics.json").read_text())  # DVCLive's summary
        assert live["step"] >= 1 and "reward" in live and "toolmatch" in live
    assert json.loads((project / "data/iter_0/dvclive/metrics.json").read_text())["step"] >= 1
    _looptool(project, "sql", 'SELECT iter, count(*) n, count("toolmatch/match_rate") m '
              "FROM train_steps GROUP BY iter ORDER BY iter", "--csv", "steps.csv")  # fmt: skip
    steps = pl.read_csv(project / "steps.csv")  # the view reads DVCLive's per-step files
    assert steps["iter"].to_list() == [1, 2] and steps["n"].min() >= 1
    assert steps["n"].to_list() == steps["m"].to_list()
    d3 = pl.read_parquet(project / "data/iter_3/dataset.parquet")
    assert d3.height == SMOKE["loop.dataset_size"]
    curve = pl.read_csv(project / "data/iter_2/eval_curve.csv")
    assert curve["iter"].to_list() == [0, 1, 2]


def test_status(project: Path) -> None:
    out = json.loads(_looptool(project, "status", "--json"))
    rows = {r["iter"]: r for r in out["iterations"]}
    assert rows[1]["train"] and rows[2]["eval"] and rows[2]["compose"]
    for j in (1, 2, 3):
        n = pl.read_parquet(project / f"data/iter_{j}/dataset.parquet").height
        assert rows[j]["dataset"] == n


def test_diff_matches_polars(project: Path) -> None:
    out = json.loads(_looptool(project, "diff", "D2", "D3", "--json"))
    a = pl.read_parquet(project / "data/iter_2/dataset.parquet").unique("sample_id")
    b = pl.read_parquet(project / "data/iter_3/dataset.parquet").unique("sample_id")
    ids_a, ids_b = set(a["sample_id"]), set(b["sample_id"])
    counts = out["counts"]
    assert counts["added"] == len(ids_b - ids_a)
    assert counts["removed"] == len(ids_a - ids_b)
    both = a.join(b, on="sample_id", suffix="_b")
    assert counts["relabeled"] == both.filter(pl.col("label_hash") != pl.col("label_hash_b")).height


def test_sql_matches_polars(project: Path) -> None:
    out = _looptool(
        project,
        "sql",
        "SELECT iter, split, count(*)::BIGINT AS n FROM datasets GROUP BY ALL ORDER BY ALL",
        "--csv",
        "splits.csv",
    )
    got = pl.read_csv(project / "splits.csv")
    want = (
        pl.concat(
            [
                pl.read_parquet(p).select("iter", "split")
                for p in sorted((project / "data").glob("iter_*/dataset.parquet"))
            ]
        )
        .group_by("iter", "split")
        .len("n")
        .sort("iter", "split")
    )
    assert got.sort("iter", "split").to_dicts() == want.to_dicts(), out
    verdicts = pl.read_parquet(project / "data/iter_1/verdicts.parquet")
    res = _looptool(project, "sql", "SELECT count(*) AS n FROM verdicts WHERE iter = 1")
    assert str(verdicts.height) in res


def test_lineage(project: Path) -> None:
    d2 = pl.read_parquet(project / "data/iter_2/dataset.parquet")
    sid = d2["sample_id"][0]
    out = json.loads(_looptool(project, "lineage", sid, "--json"))
    assert sid in json.dumps(out)


def _ran(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage")}


def test_iteration_two_knob_reruns_only_iteration_two(project: Path) -> None:
    dvc = str(BIN / "dvc")
    noop = _run([dvc, "repro"], project)
    assert _ran(noop.stdout) == set(), noop.stdout  # no stage runs on every repro
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["iterations"]["2"]["overrides"] = {"loop.probe.hppl_quantile": 0.5}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def d1_outs() -> list:
        lock = yaml.safe_load((project / "dvc.lock").read_text())
        return lock["stages"]["init_dataset"]["outs"]

    before = d1_outs()
    res = _run([dvc, "repro"], project, timeout=900)
    ran = _ran(res.stdout)
    assert "check_params" in ran, res.stdout  # params.yaml changed: validated first
    ran.discard("check_params")
    # init_dataset reads the iteration list (seed_pool: auto sums the Seed-new schedule):
    # it reruns in seconds and, the pool unchanged, writes the same bytes, so nothing of
    # iteration 1 reruns after it
    ran.discard("init_dataset")
    assert d1_outs() == before
    assert ran, res.stdout
    assert all(name.endswith("@2") for name in ran), ran
    assert {"train@2", "probe@2", "compose@2"} <= ran


def test_typo_in_params_fails_repro_naming_the_key(project: Path) -> None:
    dvc = str(BIN / "dvc")
    path = project / "params.yaml"
    good = path.read_text()
    params = yaml.safe_load(good)
    params["loop"]["dataset_sise"] = 5  # a typo no stage tracks
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    res = subprocess.run([dvc, "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert res.returncode != 0, res.stdout
    assert "loop.dataset_sise: unknown key" in res.stdout + res.stderr
    path.write_text(good)
    noop = _run([dvc, "repro"], project)
    assert _ran(noop.stdout) == set(), noop.stdout
