"""GRPO training on the tiny model: a 2-step smoke run, resume after a kill, and the
checkpoint chain (iteration 2 starts from iteration 1's saved weights, fresh optimizer)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from transformers import TrainerCallback

from looptool.core.tables import DATASET, SAMPLES, rows_to_table, sample_to_row
from looptool.core.types import Sample
from looptool.loop.train import grpo_config, train_grpo
from looptool.loop.train_rows import TrainError, read_samples
from looptool.loop.train_setup import check_tag_tokens
from looptool.loop.train_steps import step_rows, summarize_steps
from looptool.params.train import TrainParams
from looptool.store.io import write_parquet_atomic

DATE = "2026-11-22"
REPO = Path(__file__).resolve().parents[1]


def _load_bench_train():
    # One generator of learnable tool-calling samples, shared with the learning benchmark
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic_samples = _load_bench_train().echo_samples


def write_samples(path: Path, samples: list[Sample], dataset: bool = True) -> Path:
    """A DATASET (split SEED, iteration 1) or SAMPLES parquet table of ``samples``."""
    rows = [sample_to_row(s) for s in samples]
    if dataset:
        for row in rows:
            row.update(split="SEED", iter=1)
    write_parquet_atomic(path, rows_to_table(rows, DATASET if dataset else SAMPLES))
    return path


# Two optimizer steps of 2 prompts x 2 generations, short completions: seconds on CPU.
SMOKE = TrainParams(
    learning_rate=1e-2,
    weight_decay=0.1,  # the random model earns no reward; decay still moves the weights
    prompts_per_step=2,
    num_generations=2,
    micro_batch_size=4,
    max_steps=2,
    max_completion_length=12,
    save_steps=1,
    device="cpu",
    cpu_threads=1,
)


def state_dict(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


class Killed(Exception):
    pass


class KillAtStep(TrainerCallback):
    """Simulates a killed run: raises after checkpoint-1 was written, at step 2."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise Killed


class StartProbe(TrainerCallback):
    """Records the weights the trainer starts from and the optimizer state after step 1."""

    def __init__(self):
        self.start: dict | None = None
        self.adam_steps: list[float] = []
        self.first_global_step: int | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.first_global_step = state.global_step
        self.start = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step == 1:
            self.adam_steps = [float(s["step"]) for s in optimizer.state.values() if "step" in s]


@pytest.fixture(scope="module")
def chain(tiny_model_dir, tmp_path_factory):
    """Iteration 1 (killed once, then resumed) and iteration 2 started from it."""
    root = tmp_path_factory.mktemp("train")
    data = write_samples(root / "dataset.parquet", synthetic_samples(12, seed=1))
    scratch = root / "scratch"
    live = root / "iter_1" / "dvclive"
    with pytest.raises(Killed):
        train_grpo(
            data,
            tiny_model_dir,
            root / "iter_1" / "model",
            SMOKE,
            date=DATE,
            scratch_root=scratch,
            name="iter_1",
            callbacks=[KillAtStep()],
            live_dir=live,
        )
    killed_ckpts = sorted(p.name for p in scratch.rglob("checkpoint-*"))
    out, err = io.StringIO(), io.StringIO()  # not a terminal: progress lines, no bar
    with redirect_stdout(out), redirect_stderr(err):
        it1 = train_grpo(
            data,
            tiny_model_dir,
            root / "iter_1" / "model",
            SMOKE,
            date=DATE,
            scratch_root=scratch,
            name="iter_1",
            live_dir=live,
        )
    (scratch / "train" / "iter_2-0123456789abcdef" / "checkpoint-3").mkdir(parents=True)
    probe = StartProbe()
    it2 = train_grpo(
        data,
        root / "iter_1" / "model",
        root / "iter_2" / "model",
        SMOKE,
        date=DATE,
        scratch_root=scratch,
        name="iter_2",
        callbacks=[probe],
    )
    return {
        "root": root,
        "scratch": scratch,
        "live": live,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "killed_ckpts": killed_ckpts,
        "it1": it1,
        "it2": it2,
        "probe": probe,
    }


def test_smoke_two_steps_writes_checkpoint_and_metrics(chain, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = chain["it1"]
    model_dir = chain["root"] / "iter_1" / "model"
    assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(str(model_dir))  # tokenizer saved with the model
    check_tag_tokens(tok, str(model_dir))
    AutoModelForCausalLM.from_pretrained(str(model_dir))
    m = res.metrics
    assert m["global_step"] == 2 and m["steps"] == 2
    assert [r["step"] for r in res.steps] == [1, 2]
    for key in ("reward", "loss", "grad_norm", "zero_variance_group_share", "match_rate"):
        assert all(key in r for r in res.steps), key
    assert 0.0 <= m["reward_mean"] <= 1.0
    assert m["samples"] == 12 and m["samples_too_long"] == 0
    assert m["optimizer"] == "fresh"
    assert sum(m["reward_reasons"].values()) > 0  # the reward scored every completion
    json.dumps(m)  # JSON-safe for the DVC metrics file
    # scratch removed after success, with a stale run of another key (iteration 2's)
    assert not list(chain["scratch"].glob("train/*"))


def _tsv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_dvclive_records_every_step_of_a_resumed_run(chain):
    """DVCLive's files after a kill at step 2 and a resume from checkpoint-1: step 1 comes
    from the checkpoint's log history, step 2 from the resumed run; TRL 1.16's GRPO names
    and the reward's own toolmatch/* keys arrive; no timings, no paths."""
    import yaml

    live = chain["live"]
    plots = live / "plots" / "metrics"
    names = {p.relative_to(plots).with_suffix("").as_posix() for p in plots.rglob("*.tsv")}
    trl_grpo = {"reward", "reward_std", "frac_reward_zero_std", "loss", "grad_norm",
                "learning_rate", "entropy", "num_tokens", "completions/mean_length",
                "completions/clipped_ratio", "clip_ratio/region_mean", "rewards/toolmatch/mean",
                "epoch"}  # fmt: skip
    ours = {"toolmatch/match_rate", "toolmatch/tool_call_rate", "toolmatch/parse_failure_rate"}
    assert trl_grpo | ours <= names, sorted(trl_grpo | ours - names)
    assert not {"step_time", "train/runtime", "train/loss", "total_flos"} & names
    for name in ("reward", "toolmatch/match_rate", "loss"):
        rows = _tsv(plots / f"{name}.tsv")
        assert [r["step"] for r in rows] == ["1", "2"], name
    rewards = [float(r["reward"]) for r in _tsv(plots / "reward.tsv")]
    assert rewards == [r["reward"] for r in chain["it1"].steps]  # the trainer's own values
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["reward"] == rewards[-1]
    assert "match_rate" in summary["toolmatch"] and "runtime" not in summary.get("train", {})
    params = yaml.safe_load((live / "params.yaml").read_text())
    assert params["max_steps"] == 2 and params["num_generations"] == 2
    assert "output_dir" not in params and str(chain["scratch"]) not in json.dumps(params)
    assert not (live / "dvc.yaml").exists() and not list(live.glob("report.*"))


def test_progress_lines_not_dicts(chain):
    err, out = chain["stderr"], chain["stdout"]
    assert "{'loss'" not in out + err and "'reward':" not in out + err  # no dict dumps
    lines = [ln for ln in err.splitlines() if ln.startswith("train iter_1: ")]
    assert lines[0] == "train iter_1: 2 steps, resumed at step 1", err
    assert lines[1].startswith("train iter_1: step 2/2 (100%)") and "ETA 0s" in lines[1]
    assert "reward " in lines[1] and "loss " in lines[1]
    assert lines[-1].startswith("train iter_1: done: 1 step in ")
    assert "Writing model shards" not in err  # transformers' own bars are off while training


def test_killed_run_resumes_from_last_trainer_checkpoint(chain):
    assert chain["killed_ckpts"] == ["checkpoint-1"]
    assert chain["it1"].metrics["resumed_from_step"] == 1
    assert chain["it2"].metrics["resumed_from_step"] is None


def test_iteration_2_starts_from_iteration_1_with_fresh_optimizer(chain, tiny_model_dir):
    import torch

    probe = chain["probe"]
    base = state_dict(tiny_model_dir)
    saved = state_dict(chain["root"] / "iter_1" / "model")
    start = probe.start
    shared = [k for k in saved if k in start]
    assert shared and len(shared) == len(saved)
    assert all(torch.equal(start[k], saved[k]) for k in shared)  # starts at iteration 1's weights
    assert any(not torch.equal(saved[k], base[k]) for k in shared)  # which moved from the base
    assert probe.first_global_step == 0  # not resumed from iteration 1's trainer state
    assert probe.adam_steps and set(probe.adam_steps) == {1.0}  # a new optimizer
    after = state_dict(chain["root"] / "iter_2" / "model")
    assert any(not torch.equal(after[k], saved[k]) for k in shared)


def test_changed_dataset_gets_a_new_scratch_key(tmp_path, tiny_model_dir):
    from looptool.loop.train_setup import file_digest, run_dir

    a = write_samples(tmp_path / "a.parquet", synthetic_samples(4, seed=1))
    b = write_samples(tmp_path / "b.parquet", synthetic_samples(4, seed=2))
    key = {"params": SMOKE.model_dump(mode="json")}
    da = run_dir(tmp_path, "train", "iter_1", {**key, "dataset": file_digest(a)})
    db = run_dir(tmp_path, "train", "iter_1", {**key, "dataset": file_digest(b)})
    assert da != db and da.parent == db.parent


def test_batch_geometry_and_gpu_options(tmp_path):
    cfg = grpo_config(
        TrainParams(prompts_per_step=8, num_generations=4, micro_batch_size=8, device="cpu"),
        tmp_path,
    )
    assert cfg.per_device_train_batch_size == 8 and cfg.gradient_accumulation_steps == 4
    assert cfg.generation_batch_size == 32  # one generation round per optimizer step
    assert cfg.beta == 0.0 and cfg.epsilon == 0.2 and cfg.epsilon_high == 0.28
    with pytest.raises(TrainError, match="split evenly"):
        grpo_config(
            TrainParams(prompts_per_step=3, num_generations=3, micro_batch_size=2), tmp_path
        )
    with pytest.raises(TrainError, match=r"'server' needs CUDA: .*init_communicator"):
        grpo_config(TrainParams(use_vllm=True, vllm_mode="server",
                                vllm_server_base_url="http://x:8000", device="cpu"), tmp_path)  # fmt: skip
    if importlib.util.find_spec("vllm") is None:  # the main venv: no vLLM at all
        with pytest.raises(TrainError, match="use_vllm on CPU needs vLLM's CPU build"):
            grpo_config(TrainParams(use_vllm=True, device="cpu"), tmp_path)


def test_paper_defaults():
    p = TrainParams()
    assert (p.learning_rate, p.prompts_per_step, p.num_generations) == (1e-6, 128, 16)
    assert (p.epsilon, p.epsilon_high, p.beta, p.temperature) == (0.2, 0.28, 0.0, 1.0)
    assert (p.max_prompt_length, p.max_completion_length, p.epochs) == (4096, 1024, 2.0)


def test_bad_inputs_give_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(TrainError, match="table not found"):
        read_samples(tmp_path / "missing.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sample_id": ["x"]}), tmp_path / "cols.parquet")
    with pytest.raises(TrainError, match="missing columns"):
        read_samples(tmp_path / "cols.parquet")
    row = sample_to_row(synthetic_samples(1)[0])
    row["label"] = '{"calls": [{"name": 3}]}'
    write_parquet_atomic(tmp_path / "bad.parquet", rows_to_table([row], SAMPLES))
    with pytest.raises(TrainError, match=r"row 0 \(sample_id"):
        read_samples(tmp_path / "bad.parquet")
    data = write_samples(tmp_path / "d.parquet", synthetic_samples(2))
    tight = SMOKE.model_copy(update={"max_prompt_length": 16})
    with pytest.raises(TrainError, match="longer than train.max_prompt_length"):
        train_grpo(data, tiny_model_dir, tmp_path / "m", tight, date=DATE, scratch_root=tmp_path)


def test_special_tags_are_rejected(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    check_tag_tokens(tok, "tiny")
    tok.add_special_tokens({"additional_special_tokens": ["<tool_call>"]})
    with pytest.raises(TrainError, match="special"):
        check_tag_tokens(tok, "tiny")


def test_summary_first_and_last_windows():
    log = [
        {"step": i, "epoch": i / 3, "reward": r, "grad_norm": g, "loss": 0.1}
        for i, (r, g) in enumerate(
            [(0.0, 0.0), (0.1, 0.2), (0.2, 0.3), (0.5, 0.0), (0.7, 0.1), (0.9, 0.4)], 1
        )
    ]
    log.append({"train_runtime": 1.0, "step": 6})  # the trainer's final summary entry
    rows = step_rows(log)
    assert len(rows) == 6
    s = summarize_steps(rows, window=2)
    assert s["reward_mean_first"] == pytest.approx(0.05)
    assert s["reward_mean_last"] == pytest.approx(0.8)
    assert s["steps_with_grad"] == 4 and s["grad_norm_max"] == 0.4
    assert [r["epoch"] for r in rows] == [1, 1, 1, 2, 2, 2]  # epoch 1.0 closes epoch 1
    assert s["reward_mean_by_epoch"] == pytest.approx([0.1, 0.7])
