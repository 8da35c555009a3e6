"""The paper-scale dry run (bench/paper_scale.py) at a small size: params.paper-scale.yaml
scaled to |D_j| = 200 and 2 iterations, `dvc repro` of the real stages in a scratch copy
of the repo; the counts follow the oracle's error rates, every D_j sums to |D_j|, and a
second `dvc repro` runs no stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench._paper_checks import check_run
from bench.paper_scale import Project, profile_params
from looptool.gpucheck import prepare
from looptool.params import Params


@pytest.mark.slow
def test_small_dry_run_through_the_real_stages(tmp_path: Path, capsys) -> None:
    params = profile_params(200, 2, 1.0)
    Params.model_validate(params)
    root = tmp_path / "repo"
    root.mkdir()
    prepare(root, params)
    project = Project(root)
    project.run([project.dvc, "repro"], timeout=600)
    assert check_run(root, params), capsys.readouterr().out
    for j in (1, 2):
        metrics = json.loads((root / f"data/iter_{j}/train_metrics.json").read_text())
        assert metrics["algorithm"] == "noop" and metrics["checkpoint_bytes"] == 1_000_000
        probe = json.loads((root / f"data/iter_{j}/probe_metrics.json").read_text())
        assert probe["cache"][0]["backend"] == "oracle" and probe["mismatch"] > 0
    _, out = project.run([project.dvc, "repro"])
    assert "Running stage" not in out, out
