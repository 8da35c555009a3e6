"""The `warmstart` and `train@j` DVC stage entry points on a tiny workspace."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_train import synthetic_samples, write_samples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path, tiny_model_dir):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["engines"]["policy"]["model"] = str(tiny_model_dir)
    params["project"]["cache_dir"] = str(tmp_path / "cache")
    params["warmstart"].update(
        enabled=True,
        max_steps=2,
        batch_size=2,
        micro_batch_size=2,
        heldout_check=2,
        heldout_check_max_tokens=8,
    )
    params["train"].update(
        max_steps=2,
        prompts_per_step=1,
        num_generations=2,
        micro_batch_size=2,
        max_samples=4,
        max_completion_length=8,
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = tmp_path / "data"
    write_samples(data / "seed" / "samples.parquet", synthetic_samples(8, seed=7), dataset=False)
    write_samples(data / "seed" / "heldout.parquet", synthetic_samples(2, seed=8), dataset=False)
    write_samples(data / "iter_1" / "dataset.parquet", synthetic_samples(6, seed=9))
    return tmp_path


def test_warmstart_then_train_stage(workspace):
    from stages import train, warmstart

    data = workspace / "data"
    warmstart.main(
        [
            "--params",
            str(workspace / "params.yaml"),
            "--samples",
            str(data / "seed" / "samples.parquet"),
            "--heldout",
            str(data / "seed" / "heldout.parquet"),
            "--out",
            str(data / "iter_0"),
        ]
    )
    ws = json.loads((data / "iter_0" / "warmstart_metrics.json").read_text())
    assert ws["enabled"] and ws["steps"] == 2
    assert ws["heldout"]["n"] == 2 and 0.0 <= ws["heldout"]["parse_ok_rate"] <= 1.0
    assert (data / "iter_0" / "model" / "model.safetensors").exists()

    # DVC passes the whole foreach item; unknown flags are ignored
    train.main(
        [
            "--j",
            "1",
            "--prev",
            "0",
            "--next",
            "2",
            "--params",
            str(workspace / "params.yaml"),
            "--data",
            str(data),
        ]
    )
    metrics = json.loads((data / "iter_1" / "train_metrics.json").read_text())
    assert metrics["iteration"] == 1 and metrics["global_step"] == 2
    assert metrics["start_model"] == str(data / "iter_0" / "model")
    with open(data / "iter_1" / "train_plots.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2"] and "reward" in rows[0]
    assert (data / "iter_1" / "model" / "tokenizer.json").exists()


def test_train_stage_missing_inputs_exit_with_a_message(workspace):
    from stages import train

    shutil.rmtree(workspace / "data" / "iter_1")
    with pytest.raises(SystemExit) as exc:
        train.main(
            [
                "--j",
                "1",
                "--params",
                str(workspace / "params.yaml"),
                "--data",
                str(workspace / "data"),
            ]
        )
    assert "train@1" in str(exc.value) and "iter_0" in str(exc.value)
