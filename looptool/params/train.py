"""`warmstart` and `train` sections: SFT warm start and GRPO.

Class defaults are the paper's recipe (LoopTool Table 6: GRPO on Qwen3 with verl);
params.yaml overrides them with a CPU profile sized for the tiny model, and
params.gpu.yaml spells the paper values out together with the GPU switches.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Device = Literal["auto", "cpu", "cuda"]


class SFTParams(BaseModel):
    """Supervised fine-tuning (TRL SFTTrainer, completion-only loss): the warm start's
    knobs and, with ``train.algorithm: sft``, the per-iteration trainer's."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # caps the run; null: `epochs` decide
    batch_size: int = Field(16, ge=1)  # sequences per optimizer step (all devices)
    micro_batch_size: int = Field(4, ge=1)  # sequences per device per forward pass
    max_length: int = Field(5120, ge=32)  # longer samples are dropped (and counted)
    max_samples: int | None = Field(None, ge=1)  # use N samples (seeded shuffle)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    enable_thinking: bool = False  # chat-template flag used when rendering prompts
    seed: int = 0
    save_steps: int = Field(200, ge=1)  # trainer checkpoints for resuming a killed run
    device: Device = "auto"
    # torch intra-op threads on CPU (null: torch's default). 1 is far steadier than 2 on a
    # small box shared with other jobs: spinning OpenMP threads stall when descheduled.
    cpu_threads: int | None = Field(None, ge=1)
    bf16: bool = False
    gradient_checkpointing: bool = False


class WarmstartParams(SFTParams):
    """SFT warm start producing data/iter_0/model (the checkpoint iteration 1 starts from).

    When disabled the stage copies the base model unchanged (save_pretrained), so the
    checkpoint chain always starts at data/iter_0/model. The paper uses pure RL: the
    GPU profile disables it; the CPU default needs it because the tiny random model
    cannot produce the output format at all.
    """

    enabled: bool = False
    # Local checkpoint to start from; null: engines.policy.model.
    base_model: str | None = None
    # reserved: the warm start's `max_samples` seed samples are its own split, kept out of
    # D_1 and the Seed-new pool (Eq. 5's Seed-new must be data the policy never trained
    # on); shared: it may train on any seed sample (D_1 / Seed-new overlap it).
    split: Literal["reserved", "shared"] = "reserved"
    # After the stage: greedy-decode this many held-out prompts with the policy engine and
    # report parseable <tool_call> / strict match rates (0: skip). train.guard compares
    # every iteration's rate on the same prompts with this one.
    heldout_check: int = Field(0, ge=0)
    heldout_check_max_tokens: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check_split(self) -> WarmstartParams:
        if self.enabled and self.split == "reserved" and self.max_samples is None:
            raise ValueError(
                "split 'reserved' needs max_samples (how many seed samples the warm start "
                "keeps for itself); or set split: shared"
            )
        return self


class GuardParams(BaseModel):
    """Collapse guard after every train@j: greedy tool-call rate on the warm start's
    call-labelled held-out check prompts, compared with the warm start's own rate."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_ratio: float = Field(0.8, ge=0, le=1)  # rate after train@j / warm start's rate
    action: Literal["warn", "fail"] = "warn"  # fail: train@j exits non-zero (model kept)


class NoopParams(BaseModel):
    """``train.algorithm: noop`` (dry runs, params.paper-scale.yaml): no training; train@j
    writes a placeholder checkpoint of ``checkpoint_bytes`` through the same temp-dir-and-
    rename path real training uses, so DVC hashes, caches and links a file of a real
    checkpoint's size. Only the oracle policy backend serves such a checkpoint."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_bytes: int = Field(1_000_000_000, ge=4096)  # default 1 GB (8B in bf16: 16 GB)
    # sparse: a 4 KB header that differs per iteration, then a hole (no disk blocks where
    # the filesystem supports it); false: every byte written
    sparse: bool = True


class TrainParams(BaseModel):
    """GRPO on D_j (TRL GRPOTrainer), starting from iteration j-1's checkpoint.

    One optimizer step consumes ``prompts_per_step`` prompts x ``num_generations``
    completions (verl's train_batch_size counts prompts); it is run as micro-batches of
    ``micro_batch_size`` completions per device with gradient accumulation.
    """

    model_config = ConfigDict(extra="forbid")

    # grpo: the paper's RL step; sft: supervised fine-tuning on D_j's labels (`sft` knobs),
    # for budgets where GRPO cannot move the policy. Same checkpoint chain either way.
    # noop: no training, a placeholder checkpoint of `noop.checkpoint_bytes` (dry runs)
    algorithm: Literal["grpo", "sft", "noop"] = "grpo"
    sft: SFTParams = SFTParams()
    noop: NoopParams = NoopParams()
    # binary: 1 iff strict ToolMatch (the paper); graded: partial credit for answer kind,
    # function names, argument names and values (ToolRL-style ablation), 1.0 only on a match.
    reward: Literal["binary", "graded"] = "binary"
    # DAPO dynamic sampling: drop zero-variance groups and refill the batch with groups of
    # fresh prompts, up to `dynamic_sampling_max_rounds` extra generation rounds per step.
    dynamic_sampling: bool = False
    dynamic_sampling_max_rounds: int = Field(3, ge=1)
    # Cap on the share of no-call (clarify / irrelevant) prompts in the GRPO training set
    # (so in every batch, in expectation); 1.0 = no cap.
    max_no_call_share: float = Field(1.0, ge=0, le=1)
    guard: GuardParams = GuardParams()
    learning_rate: float = Field(1e-6, gt=0)
    prompts_per_step: int = Field(128, ge=1)
    num_generations: int = Field(16, ge=2)
    micro_batch_size: int = Field(16, ge=1)  # completions per device per forward/backward
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # caps the run; null: `epochs` decide
    max_samples: int | None = Field(None, ge=1)  # train on the first N of D_j (seeded shuffle)
    # Clipping (DAPO clip-higher), KL and entropy terms
    epsilon: float = Field(0.2, gt=0)
    epsilon_high: float = Field(0.28, gt=0)
    beta: float = Field(0.0, ge=0)  # KL coefficient; 0 loads no reference model
    entropy_coef: float = Field(0.0, ge=0)
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = False
    # Rollouts
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_prompt_length: int = Field(4096, ge=16)  # longer prompts are dropped (and counted)
    max_completion_length: int = Field(1024, ge=1)
    enable_thinking: bool = False  # chat-template flag used when rendering prompts
    # Optimizer (reset every iteration: each run starts from a saved model, never a state)
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0
    # Bookkeeping
    save_steps: int = Field(20, ge=1)  # trainer checkpoints for resuming a killed run
    metrics_window: int = Field(5, ge=1)  # steps averaged for "first" / "last" reward means
    # GPU switches (see README "Training on GPUs")
    # Command dvc.yaml runs the stage module with, e.g.
    # "accelerate launch --config_file configs/accelerate_deepspeed_zero2.yaml".
    launcher: str = "python"
    device: Device = "auto"
    # torch intra-op threads on CPU (null: torch's default). 1 is far steadier than 2 on a
    # small box shared with other jobs: spinning OpenMP threads stall when descheduled.
    cpu_threads: int | None = Field(None, ge=1)
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None  # server mode, e.g. http://127.0.0.1:8000
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)  # colocate mode
    vllm_tensor_parallel_size: int = Field(1, ge=1)  # colocate mode

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.epsilon_high < self.epsilon:
            raise ValueError("epsilon_high must be >= epsilon (clip-higher)")
        if self.vllm_mode == "server" and self.use_vllm and not self.vllm_server_base_url:
            raise ValueError("vllm_mode 'server' needs vllm_server_base_url")
        return self
