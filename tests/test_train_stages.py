"""The `warmstart` and `train@j` DVC stage entry points on a tiny workspace."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from test_train import state_dict, synthetic_samples, write_samples

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
    # split: reserved -> the samples it drew are its own (D_1 / Seed-new never draw them)
    reserved = pl.read_parquet(data / "iter_0" / "warmstart_samples.parquet")
    seed_ids = pl.read_parquet(data / "seed" / "samples.parquet")["sample_id"]
    assert ws["reserved_samples"] == reserved.height == 8
    assert set(reserved["sample_id"]) == set(seed_ids) and set(reserved["used_iter"]) == {0}
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
    # per-step curves: DVCLive's files at the paths dvc.yaml declares
    live = data / "iter_1" / "dvclive"
    assert json.loads((live / "metrics.json").read_text())["step"] == 2
    for name in ("reward", "frac_reward_zero_std", "toolmatch/tool_call_rate"):
        with open(live / "plots" / "metrics" / f"{name}.tsv") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        assert [r["step"] for r in rows] == ["1", "2"], name
    assert (live / "params.yaml").is_file() and not (data / "iter_1" / "train_plots.csv").exists()
    ws_live = data / "iter_0" / "dvclive"  # the warm start's SFT curves
    assert (ws_live / "plots" / "metrics" / "loss.tsv").read_text().startswith("step\tloss\n1\t")
    assert json.loads((ws_live / "metrics.json").read_text())["step"] == 2
    assert (data / "iter_1" / "model" / "tokenizer.json").exists()
    # the collapse guard ran on the warm start's held-out check prompts
    guard = metrics["guard"]
    assert guard["warmstart_tool_call_rate"] == ws["heldout"]["tool_call_rate"]
    assert metrics["heldout"]["n"] == 2 and "ok" in guard


def _train_args(workspace) -> list[str]:
    return [
        "--j",
        "1",
        "--params",
        str(workspace / "params.yaml"),
        "--data",
        str(workspace / "data"),
    ]


def test_collapse_guard_fails_the_stage_when_asked(workspace, monkeypatch, capsys):
    from stages import train

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["guard"] = {"enabled": True, "min_ratio": 0.8, "action": "fail"}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(tiny_dir(workspace), workspace / "data" / "iter_0" / "model")
    (workspace / "data" / "iter_0" / "warmstart_metrics.json").write_text(
        json.dumps({"heldout": {"n": 4, "tool_call_rate": 0.9}})
    )
    monkeypatch.setattr(train, "heldout_check", lambda *a: {"n": 4, "tool_call_rate": 0.5})
    with pytest.raises(SystemExit) as exc:
        train.main(_train_args(workspace))
    assert "COLLAPSE GUARD" in str(exc.value) and "0.50 < 0.8 x the warm start's 0.90" in str(
        exc.value
    )
    metrics = json.loads((workspace / "data" / "iter_1" / "train_metrics.json").read_text())
    assert metrics["guard"]["ok"] is False and metrics["guard"]["ratio"] == pytest.approx(0.5 / 0.9)
    # action warn: same numbers, the stage succeeds with a loud warning
    params["train"]["guard"]["action"] = "warn"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    train.main(_train_args(workspace))
    assert "WARNING: train@1: COLLAPSE GUARD" in capsys.readouterr().err


def test_sft_algorithm_trains_on_d_j_with_the_same_chain(workspace):
    from stages import train

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["algorithm"] = "sft"
    params["train"]["sft"] = {"learning_rate": 1e-2, "max_steps": 2, "batch_size": 2,
                              "micro_batch_size": 2, "device": "cpu", "cpu_threads": 1}  # fmt: skip
    params["warmstart"]["heldout_check"] = 0  # no guard: nothing to compare with
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(tiny_dir(workspace), workspace / "data" / "iter_0" / "model")
    train.main(_train_args(workspace))
    data = workspace / "data"
    metrics = json.loads((data / "iter_1" / "train_metrics.json").read_text())
    assert metrics["algorithm"] == "sft" and metrics["steps"] == 2 and "guard" not in metrics
    assert metrics["samples_trained"] == 6 and metrics["base_model"] == str(
        data / "iter_0" / "model"
    )
    assert sum(metrics["splits_trained"].values()) == 6  # D_1's split column, read through
    before, after = state_dict(data / "iter_0" / "model"), state_dict(data / "iter_1" / "model")
    assert any(not torch.equal(before[k], after[k]) for k in after)
    loss = data / "iter_1" / "dvclive" / "plots" / "metrics" / "loss.tsv"
    assert len(loss.read_text().splitlines()) == 3  # header + 2 steps of SFT


def test_disabled_warmstart_leaves_the_declared_dvclive_files(workspace):
    from stages import warmstart

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["warmstart"].update(enabled=False, heldout_check=0)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = workspace / "data" / "iter_0"
    warmstart.main(["--params", str(workspace / "params.yaml"), "--out", str(out)])
    live = out / "dvclive"
    assert json.loads((live / "metrics.json").read_text()) == {"step": 0}
    assert (live / "plots" / "metrics").is_dir() and (live / "params.yaml").is_file()


def tiny_dir(workspace) -> Path:  # noqa: N802
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    return Path(params["engines"]["policy"]["model"])


def test_train_stage_missing_inputs_exit_with_a_message(workspace):
    from stages import train

    shutil.rmtree(workspace / "data" / "iter_1")
    with pytest.raises(SystemExit) as exc:
        train.main(_train_args(workspace))
    assert "train@1" in str(exc.value) and "iter_0" in str(exc.value)


def test_warmstart_reserves_only_the_samples_it_trained_on(workspace):
    """A seed sample dropped as too long is never trained on: D_1 and Seed-new keep it."""
    from looptool.core.types import Message
    from stages import warmstart

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["warmstart"].update(max_steps=1, heldout_check=0, max_samples=8, max_length=1536)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    short = synthetic_samples(6, seed=7)
    long = [
        s.model_copy(update={"context": [Message(role="user", content="word " * 4000 + str(k))]})
        for k, s in enumerate(synthetic_samples(2, seed=11))
    ]
    data = workspace / "data"
    write_samples(data / "seed" / "samples.parquet", short + long, dataset=False)
    warmstart.main(
        ["--params", str(workspace / "params.yaml"), "--samples",
         str(data / "seed" / "samples.parquet"), "--out", str(data / "iter_0")]
    )  # fmt: skip
    ws = json.loads((data / "iter_0" / "warmstart_metrics.json").read_text())
    assert (ws["samples"], ws["samples_trained"], ws["samples_too_long"]) == (8, 6, 2)
    reserved = pl.read_parquet(data / "iter_0" / "warmstart_samples.parquet")
    assert ws["reserved_samples"] == reserved.height == 6
    assert set(reserved["sample_id"]) == {s.sample_id for s in short}


def test_train_warns_what_the_length_limit_left_out_per_split():
    from stages.train import too_long_note

    metrics = {"samples": 64, "samples_fitting": 27,
               "splits_dataset": {"EE": 35, "ES": 21, "HPPL": 3, "SEED_NEW": 5},
               "splits_too_long": {"EE": 22, "ES": 13, "HPPL": 1, "SEED_NEW": 1}}  # fmt: skip
    note = too_long_note(metrics, "data/iter_4/dataset.parquet", "train.sft.max_length")
    assert note == (
        "37 of 64 rows of data/iter_4/dataset.parquet are longer than train.sft.max_length "
        "and are not trained on (EE 22 of 35, ES 13 of 21, HPPL 1 of 3, SEED_NEW 1 of 5)"
    )
    assert too_long_note({"samples": 8, "samples_fitting": 8}, "t", "l") is None
    # metrics written since samples_too_long was recorded say it directly
    recorded = {"samples": 64, "samples_too_long": 5, "samples_fitting": 59}
    assert (
        too_long_note(recorded, "t", "l")
        == "5 of 64 rows of t are longer than l and are not trained on"
    )
    assert too_long_note({"samples": 8}, "t", "l") is None  # not recorded: no claim
