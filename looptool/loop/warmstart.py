"""Supervised fine-tuning (TRL SFTTrainer): the optional warm start producing the checkpoint
iteration 1 starts from, and ``train.algorithm: sft`` (SFT on D_j's labels per iteration).

The warm start is for policies that cannot yet produce the output format (the tiny random
model of the CPU default); the paper's GPU recipe is pure RL and copies the base model.
Training examples are (prompt, completion) pairs, tokenized apart (:func:`sft_examples`):
the prompt is exactly what GRPO and the probe render
(:func:`looptool.core.prompting.render_prompt`), the completion is the label in the
codec's text form plus the end-of-turn token, and only completion tokens carry loss
(TRL's completion-only loss: the assistant turn being learned).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looptool.core.codec import parse_completion, render_label
from looptool.core.match import match_strict
from looptool.core.types import Sample
from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.engines.policy_request import policy_request
from looptool.loop.train_setup import (
    TrainResult,
    clear_runs,
    file_digest,
    is_main_process,
    per_rank_batch,
    resolve_use_cpu,
    run_dir,
    train_resumable,
    train_speed,
    trainer_args,
    training_rows,
    world_size,
)
from looptool.loop.train_steps import step_rows
from looptool.params.train import SFTParams


def label_completion(tokenizer, sample: Sample) -> str:
    """The label's assistant turn after the generation prompt: codec text + end of turn.

    This is exactly what a policy should generate after :func:`render_prompt` (the
    generation prompt already holds the assistant header and any empty think block).
    """
    return render_label(sample.label) + (tokenizer.eos_token or "")


def sft_examples(
    prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]]
) -> dict[str, list[list[int]]]:
    """Pre-tokenized SFT examples: the prompt's own ids, then the completion's (each
    tokenized apart, :func:`looptool.loop.train_setup.training_rows`).

    Tokenizing ``prompt + completion`` as one string lets byte-level BPE merge across the
    boundary: SmolLM2 reads the generation prompt's closing "\\n\\n" as one token alone
    but as two before a text answer, so TRL would cut the prompt short and train a context
    the policy never sees at inference. Separate ids keep the prompt exactly as rendered
    for GRPO, the probe and eval; only completion ids carry loss (``completion_mask``).
    """
    return {
        "input_ids": [p + c for p, c in zip(prompt_ids, completion_ids, strict=True)],
        "completion_mask": [
            [0] * len(p) + [1] * len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)
        ],
    }


def sft_config(params: SFTParams, output_dir: Path, n_processes: int = 1):
    from trl import SFTConfig

    per_rank = per_rank_batch(
        params.batch_size,
        n_processes,
        params.micro_batch_size,
        f"SFT batch_size {params.batch_size}",
    )
    return SFTConfig(
        **trainer_args(params, output_dir, resolve_use_cpu(params.device), per_rank),
        max_length=params.max_length,
        packing=False,
        completion_only_loss=True,
    )


def train_sft(
    samples_path: str | os.PathLike,
    base_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    params: SFTParams,
    *,
    date: str,
    scratch_root: str | os.PathLike,
    kind: str = "warmstart",
    name: str = "iter_0",
    callbacks: Sequence[Any] = (),
    keep_scratch: bool = False,
    max_no_call_share: float = 1.0,
    live_dir: str | os.PathLike | None = None,
) -> TrainResult:
    """SFT ``base_model`` on the samples at ``samples_path`` and save it to ``out_dir``;
    resumable. The rows are chosen by :func:`select_training_rows` (``params.max_samples``
    of those that fit ``max_length``, no-call rows capped at ``max_no_call_share``: the
    rule GRPO uses); ``TrainResult.sample_ids`` are the rows trained on. ``kind``/``name``
    key the scratch run directory (warm start: warmstart/iter_0; per iteration:
    train/iter_j). With ``live_dir``, DVCLive writes the per-step metrics there."""
    from datasets import Dataset
    from trl import SFTTrainer

    from looptool.loop.train_logging import attach

    t0 = time.perf_counter()
    base = check_model_dir(str(base_model), "warmstart base model")
    rows = training_rows(
        base,
        samples_path,
        params,
        date=date,
        max_length=params.max_length,
        max_no_call_share=max_no_call_share,
        too_long="every sample is longer than "
        f"{'warmstart' if kind == 'warmstart' else 'train.sft'}.max_length ({params.max_length})",
        none_left=f"no sample left under max_no_call_share {max_no_call_share}",
        completion=label_completion,
    )
    completion_ids, keep = rows.completion_ids, rows.selection.rows
    assert completion_ids is not None  # training_rows was given a completion
    dataset = Dataset.from_dict(
        sft_examples([rows.prompt_ids[i] for i in keep], [completion_ids[i] for i in keep])
    )
    key = {
        "samples": file_digest(samples_path),
        "base": model_fingerprint(base),
        "params": params.model_dump(mode="json"),
        "max_no_call_share": max_no_call_share,
        "date": date,
        "world": world_size(),
    }
    output_dir = run_dir(scratch_root, kind, name, key)
    config = sft_config(params, output_dir, world_size())
    trainer = SFTTrainer(
        model=str(base),
        args=config,
        train_dataset=dataset,
        processing_class=rows.tokenizer,
        callbacks=list(callbacks),
    )
    attach(trainer, f"{kind} {name}", live_dir)
    resumed = train_resumable(trainer, output_dir, out_dir, params.cpu_threads)

    steps = step_rows(trainer.state.log_history)
    losses = [r["loss"] for r in steps if "loss" in r]
    w = max(1, min(5, len(losses) // 2 or 1))
    metrics: dict[str, Any] = {
        "algorithm": "sft",
        "base_model": str(base_model),
        "steps": len(steps),
        "loss_first": sum(losses[:w]) / w if losses else None,
        "loss_last": sum(losses[-w:]) / w if losses else None,
        **rows.selection.metrics,
        # optimizer steps x sequences per step (what the budget is measured in)
        "sequences_trained": (trainer.state.global_step or 0) * params.batch_size,
        "resumed_from_step": resumed,
        "runtime_s": round(time.perf_counter() - t0, 2),
        **train_speed(trainer, resumed),
    }
    if is_main_process() and not keep_scratch:
        clear_runs(output_dir)
    return TrainResult(metrics, steps, [rows.loaded.sample_ids[i] for i in keep])


def copy_base(base_model: str | os.PathLike, out_dir: str | os.PathLike) -> TrainResult:
    """Warm start disabled: the base model itself, re-saved with save_pretrained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = check_model_dir(str(base_model), "warmstart base model")
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return TrainResult({"enabled": False, "base_model": str(base_model), "steps": 0}, [])


def format_check(
    engine,
    samples: Sequence[Sample],
    *,
    date: str,
    enable_thinking: bool = False,
    max_tokens: int = 256,
) -> dict[str, Any]:
    """Greedy-decode ``samples`` with a policy engine; rates of parseable output and matches.

    ``tool_call_rate`` counts, among samples whose label has calls, completions that
    parse cleanly and hold at least one ``<tool_call>``; the rest of those samples split
    into ``text_answer_rate`` (parsed, no call: a text answer) and ``unparsed_rate``
    (output that does not parse, e.g. broken JSON or calls repeated until the token cap),
    two different failures a collapse warning must tell apart. A sample whose request failed
    (:class:`~looptool.engines.base.Failed`) is left out of every rate and listed under
    ``engine_failed`` with its sample_id and reason.
    """
    from looptool.engines import SamplingParams
    from looptool.engines.failures import failed_items, first_text

    if not samples:
        return {"n": 0}
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    requests = [policy_request(s, date, sampling, enable_thinking) for s in samples]
    outs = engine.generate(requests)
    failed = failed_items([s.sample_id for s in samples], outs)
    kept = [(s, first_text(o)) for s, o in zip(samples, outs, strict=True)]
    samples = [s for s, text in kept if text is not None]
    parsed = [parse_completion(text) for _, text in kept if text is not None]
    with_calls = [i for i, s in enumerate(samples) if s.label.calls]

    def names(calls) -> list[str]:
        return sorted(c.name for c in calls)

    def rate(hits: int, n: int) -> float | None:
        return hits / n if n else None

    return {
        "n": len(samples),
        "engine_failed": failed,
        "parse_ok_rate": rate(sum(p.ok for p in parsed), len(parsed)),
        "tool_call_rate": rate(
            sum(parsed[i].ok and bool(parsed[i].calls) for i in with_calls), len(with_calls)
        ),
        "text_answer_rate": rate(
            sum(parsed[i].ok and not parsed[i].calls for i in with_calls), len(with_calls)
        ),
        "unparsed_rate": rate(sum(not parsed[i].ok for i in with_calls), len(with_calls)),
        "name_match_rate": rate(
            sum(
                parsed[i].ok and names(parsed[i].calls) == names(samples[i].label.calls)
                for i in with_calls
            ),
            len(with_calls),
        ),
        "match_rate": rate(
            sum(match_strict(p, s.label).ok for p, s in zip(parsed, samples, strict=True)),
            len(samples),
        ),
    }
