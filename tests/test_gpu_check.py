"""scripts/gpu_check.sh: the check profile validates in every mode, and --dry-run (the hf
flow on CPU) runs the whole loop with a pass table per stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from looptool.gpucheck import _RUNNING, StageRow, check_params, format_table, mode_overrides
from looptool.params import Params

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode", ["hf", "vllm", "vllm-cpu", "dry-run"])
def test_every_mode_gives_valid_params(mode):
    p = Params.model_validate(check_params(mode))
    assert sorted(i.j for i in p.iterations.values()) == [1, 2]
    if mode == "dry-run":
        assert (
            p.engines.policy.device == "cpu" and not p.train.bf16 and p.engines.judge.gpus is None
        )
    elif mode == "hf":
        assert p.engines.policy.device == "cuda" and p.train.bf16 and p.warmstart.bf16
    else:
        assert p.engines.policy.backend == p.engines.judge.backend == "vllm"
        assert p.train.use_vllm and p.train.vllm_mode == "colocate"
        cpu = mode == "vllm-cpu"
        assert (p.engines.judge.dtype == "float32") == cpu and p.train.bf16 != cpu
        assert (p.train.device == "cpu") == cpu and (p.engines.policy.gpus is None) == cpu
    with pytest.raises(ValueError, match="unknown mode"):
        mode_overrides("tpu")


def test_a_given_model_is_a_tracked_judge_checkpoint(tmp_path):
    from looptool.params.tracked import untracked_inputs

    model = str(tmp_path / "smollm2")
    p = Params.model_validate(check_params("dry-run", model))
    assert p.engines.judge.model == model and untracked_inputs(p) == []
    assert p.engines.role_checkpoints.judge == {"check": model}


def test_table_and_stage_lines():
    assert _RUNNING.search("Running stage 'probe@1':").group(1) == "probe@1"
    table = format_table([StageRow("probe@1", 1.25, True), StageRow("judge@1", 3.0, False)])
    assert "probe@1" in table and "pass" in table and "FAIL" in table and "3.0" in table


@pytest.mark.slow
def test_dry_run_passes_every_stage(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("LOOPTOOL_CACHE_DIR", None)
    res = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=env,
        timeout=3000,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    lines = res.stdout.splitlines()
    stages = [line.split()[0] for line in lines if line.endswith(tuple("0123456789"))]
    for stage in ("warmstart", "train@1", "probe@2", "judge@2", "expand@2", "eval@2"):
        assert stage in stages, res.stdout
    assert "FAIL" not in res.stdout and lines[-1].endswith("PASS")
