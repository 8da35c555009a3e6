"""The trainer setup GRPO (:mod:`looptool.loop.train`) and SFT (:mod:`looptool.loop.warmstart`)
share: the checked tokenizer, rendered prompts and token lengths, the rows a run trains on
(:func:`training_rows`), device and process choice, run directories keyed by the run's
inputs, TrainingArguments, resumable training with an atomic checkpoint save, and the
run's speed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.codec import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, THINK_OPEN
from looptool.core.prompting import render_prompt
from looptool.core.types import Sample, content_hash
from looptool.loop.train_rows import (
    LoadedSamples,
    Selection,
    TrainError,
    read_samples,
    select_training_rows,
)
from looptool.params.train import SFTParams, TrainParams
from looptool.store.io import sha256_file

_TAGS = (CALL_OPEN, CALL_CLOSE, THINK_OPEN, THINK_CLOSE)


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


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Each text's own token ids (no special tokens added)."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


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
    tmp = checkpoint_temp(out) if is_main_process() else out.with_name(f".{out.name}.tmp")
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
        commit_checkpoint(tmp, out)


def checkpoint_temp(out_dir: str | os.PathLike) -> Path:
    """The temp directory a new checkpoint for ``out_dir`` is written into (beside it, a
    stale one from a killed run removed). A checkpoint is never written in place: with
    DVC's link-based cache the workspace copy may be the cached file itself."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def commit_checkpoint(tmp: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Put the finished checkpoint ``tmp`` in place of ``out_dir``: the old one (links
    into DVC's cache, possibly) is unlinked, never overwritten, then ``tmp`` renamed."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


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


@dataclass
class TrainingRows:
    """One run's samples as its trainer sees them, and the rows it trains on."""

    tokenizer: Any
    loaded: LoadedSamples
    prompts: list[str]
    prompt_ids: list[list[int]]  # each prompt's own ids
    # SFT: each target turn's own ids; None for GRPO (it samples its own completions)
    completion_ids: list[list[int]] | None
    lengths: list[int]  # tokens per row: the prompt, plus the completion when there is one
    fits: list[bool]  # within the run's length limit
    selection: Selection


def training_rows(
    model_dir: Path,
    samples_path: str | os.PathLike,
    params: TrainParams | SFTParams,
    *,
    date: str,
    max_length: int,
    max_no_call_share: float,
    too_long: str,
    none_left: str,
    completion: Callable[[Any, Sample], str] | None = None,
) -> TrainingRows:
    """The setup GRPO and SFT share: the tokenizer of ``model_dir``, the samples at
    ``samples_path`` rendered as the policy sees them (each followed by ``completion``'s
    target turn for SFT), their token lengths against ``max_length``, and the rows
    :func:`select_training_rows` picks among those that fit.

    A TrainError names ``samples_path`` when it holds no samples, when no row fits
    (``too_long``) and when the no-call share leaves no row (``none_left``)."""
    tokenizer = load_tokenizer(model_dir)  # SFT saves it as is; TRL's collator pads right
    loaded = read_samples(samples_path)
    if not loaded.samples:
        raise TrainError(f"{samples_path}: no samples to train on")
    prompts = render_prompts(tokenizer, loaded.samples, date, params.enable_thinking)
    completion_ids: list[list[int]] | None = None
    prompt_ids = token_ids(tokenizer, prompts)
    lengths = [len(p) for p in prompt_ids]
    if completion is not None:
        # SFT trains on these prompt ids + completion ids (warmstart.sft_examples), not on
        # the joint string's tokens, so the length is the sum of the two
        completion_ids = token_ids(tokenizer, [completion(tokenizer, s) for s in loaded.samples])
        lengths = [n + len(c) for n, c in zip(lengths, completion_ids, strict=True)]
    fits = [n <= max_length for n in lengths]
    if not any(fits):
        raise TrainError(f"{samples_path}: {too_long}")
    selection = select_training_rows(
        loaded,
        fits,
        max_samples=params.max_samples,
        max_no_call_share=max_no_call_share,
        seed=params.seed,
    )
    if not selection.rows:
        raise TrainError(f"{samples_path}: {none_left}")
    return TrainingRows(
        tokenizer, loaded, prompts, prompt_ids, completion_ids, lengths, fits, selection
    )
