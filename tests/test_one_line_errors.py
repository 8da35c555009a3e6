"""One line, never a traceback: `report` over corrupt or unreadable inputs, `status` with
a damaged DVC state (rwlock, dvc.lock, .dvc/config), `compare` with a damaged
.dvc/config (issue 27, items 8 and 10)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_synth import build
from test_output_guard import _make_project

import looptool
from looptool.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(res, *needles: str) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    for n in needles:
        assert n in lines[0], res.output
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built") / "p"
    build(root, iters=2)
    (root / "params.yaml").write_text("project: {seed: 0}\n")
    tsv = root / "data/iter_1/dvclive/plots/metrics/reward.tsv"  # DVCLive's per-step file
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\treward\n1\t0.5\n2\t0.7\n")
    return root


TABLES = ["data/seed/samples.parquet", "data/seed/heldout.parquet",
          "data/iter_1/dataset.parquet", "data/iter_1/probe.parquet",
          "data/iter_1/verdicts.parquet", "data/iter_2/expansions.parquet",
          "data/iter_1/dvclive/plots/metrics/reward.tsv"]  # fmt: skip
METRICS = ["data/iter_1/eval.json", "data/iter_1/probe_metrics.json", "data/seed/metrics.json"]
DAMAGE = {
    "garbage": lambda p: p.write_bytes(b"\x00\xff\xfe garbage \x1b[31m" * 20),
    "empty": lambda p: p.write_bytes(b""),
    "folder": lambda p: (p.unlink(), p.mkdir(), (p / "x").write_text("x")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("rel", TABLES + METRICS)
def test_report_over_a_damaged_input_is_one_line_or_a_page(
    built: Path, tmp_path: Path, rel: str, damage: str
) -> None:
    root = tmp_path / "p"
    shutil.copytree(built, root)
    DAMAGE[damage](root / rel)
    out = tmp_path / "r.html"
    res = run("report", "--root", root, "--out", out)
    assert "Traceback" not in res.output and not (
        res.exception and not isinstance(res.exception, SystemExit)
    ), res.exception
    if rel in METRICS:  # a metrics file is shown as unreadable, the page still written
        assert res.exit_code == 0 and out.is_file(), res.output
    elif rel.endswith(".tsv") and damage != "folder":  # any text is a CSV of some columns
        assert res.exit_code in (0, 1) and len(res.output.strip().splitlines()) == 1
    else:
        one_line(res, rel)
        assert not out.exists()


def test_report_over_a_binary_compare_csv(built: Path, tmp_path: Path) -> None:
    bad = tmp_path / "compare.csv"
    bad.write_bytes(bytes(range(256)) * 8)
    res = run("report", "--root", built, "--out", tmp_path / "r.html", "--compare", bad)
    one_line(res, "compare.csv")


# --- status and compare with a damaged DVC state ------------------------------------------


@pytest.fixture()
def dvc_project(tmp_path: Path) -> Path:
    root = _make_project(tmp_path / "p")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "p"], check=True, capture_output=True)
    return root


def _dvc_line(res) -> str:
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    return next(x for x in res.output.splitlines() if x.startswith("dvc:"))


@pytest.mark.parametrize(
    "rwlock", ["[]", '"x"', '{"write": []}', '{"read": {"a": 5}}', '{"write": {"a": 1}}']
)
def test_status_survives_a_malformed_rwlock(dvc_project: Path, rwlock: str) -> None:
    (dvc_project / ".dvc/tmp").mkdir(exist_ok=True)
    (dvc_project / ".dvc/tmp/rwlock").write_text(rwlock)
    res = run("status", "--root", dvc_project)
    line = _dvc_line(res)  # status goes on; DVC itself refuses the file, which is named
    assert ".dvc/tmp/rwlock" in line and "format error" in line, line
    assert "iter" in res.output  # the table of iterations is there


def test_status_names_a_broken_dvc_lock(dvc_project: Path) -> None:
    (dvc_project / "dvc.lock").write_text("stages: [\n")
    line = _dvc_line(run("status", "--root", dvc_project))
    assert "dvc.lock" in line and "line 2" in line, line


@pytest.mark.parametrize("config", ["[core\nremote = \n", "[core]\nbogus_key = 1\n", "\xff\xfe"])
def test_a_damaged_dvc_config_is_one_line(dvc_project: Path, config: str) -> None:
    (dvc_project / ".dvc/config").write_bytes(config.encode("latin-1"))
    line = _dvc_line(run("status", "--root", dvc_project))
    assert ".dvc/config" in line and "staleness unknown" in line, line
    # compare checks before any `dvc exp run` (whose own traceback would reach the terminal)
    env = {**os.environ, "PYTHONPATH": str(Path(looptool.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "looptool.cli", "compare", "--root", str(dvc_project),
         "--out", str(dvc_project.parent / "cmp"), "--arms", "loop"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    assert ".dvc/config" in lines[0], lines
