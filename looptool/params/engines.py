"""params.yaml `engines:` section: one EngineSpec per role, cache switch, tiny-model recipe."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from looptool.params.endpoint import EndpointCapabilities
from looptool.params.imports import ModelImport

Backend = Literal["hf", "vllm", "openai", "template", "oracle"]
OracleError = Literal["wrong_tool", "wrong_argument", "text", "surface"]


# --- executor: ray (#17) ---------------------------------------------------------------
class RaySpec(BaseModel):
    """`engines.<role>.ray`: where and how wide a role runs with ``executor: ray``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Cluster to join (ray://host:10001 or host:6379); null: env RAY_ADDRESS, else start a
    # local cluster on this machine.
    address: str | None = None
    replicas: int = Field(2, ge=1)  # engine replicas (Ray actors / ray.data.llm workers)
    num_cpus: float = Field(1.0, ge=0)  # per replica
    num_gpus: float = Field(0.0, ge=0)  # per replica (vllm: per engine; x tensor_parallel)
    # Requests per task sent to a replica; null = the role's batch_size, which makes hf
    # replicas decode exactly the batches the local engine does (bit-identical results).
    batch_size: int | None = Field(None, ge=1)
    max_restarts: int = Field(2, ge=0)  # a dead replica is restarted this often
    max_task_retries: int = Field(2, ge=0)  # a task lost with its replica is re-sent


class OracleSpec(BaseModel):
    """`engines.<role>.oracle`: the dry-run engine (backend ``oracle``,
    engines/backends/oracle.py) answers from label tables with seeded errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Parquet tables giving each sample's true label, first table first; globs allowed
    # (data/iter_*/expansions.parquet). A table with `clean_label` (the seed's
    # label_noise.parquet) gives the true label of a sample whose stored label is noisy.
    tables: list[str] = Field(default_factory=list)
    error_rate: float = Field(0.2, ge=0, le=1)  # policy: share of samples answered wrong
    # how a wrong answer is wrong (weights): another tool, another argument value, a text
    # reply instead of the call, or a surface variant (a string argument in other case:
    # a strict mismatch the judge's equivalence tier calls BOTH_CORRECT). No-call labels:
    # a call (wrong_tool, wrong_argument), or the other kind of text (text, surface).
    error_kinds: dict[OracleError, float] = Field(
        default_factory=lambda: dict.fromkeys(
            ("wrong_tool", "wrong_argument", "text", "surface"), 1.0
        )
    )
    judge_error_rate: float = Field(0.1, ge=0, le=1)  # judge: share of verdicts flipped
    seed: int = 0

    @model_validator(mode="after")
    def _weights(self) -> OracleSpec:
        if any(w < 0 for w in self.error_kinds.values()) or not sum(self.error_kinds.values()):
            raise ValueError("error_kinds: weights must be >= 0 with a positive sum")
        return self


class EngineSpec(BaseModel):
    """Which backend serves a role, and its knobs. Unused knobs are ignored per backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend
    # hf/vllm: a local checkpoint directory (never a hub id). openai: the served model name.
    model: str | None = None
    tokenizer: str | None = None  # hf/vllm: defaults to `model`
    batch_size: int = Field(8, ge=1)  # requests per backend call (and per cache commit)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # hf only
    # hf on CPU: torch.set_num_threads (process-wide); null keeps torch's default. Small
    # models run fastest with 1 thread, and far faster than default on a busy box.
    cpu_threads: int | None = Field(None, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = (
        "auto"  # auto: bf16 on GPU, fp32 on CPU
    )
    max_model_len: int | None = Field(None, ge=16)  # prompt + completion token limit
    seed: int = 0  # vllm engine seed; sampling seeds come from SamplingParams
    # hf choice: how option log-probs are compared ("sum" = sequence likelihood incl. EOS)
    choice_score: Literal["sum", "mean"] = "sum"
    # vllm
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)  # offline vLLM 0.31 accepts only 1 (see DESIGN §7)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    # KV cache size in GiB (vLLM's kv_cache_memory_bytes; overrides gpu_memory_utilization
    # for the cache); null: from gpu_memory_utilization on GPU, 1 GiB on vLLM's CPU build
    kv_cache_gib: float | None = Field(None, gt=0)
    # openai-compatible endpoint
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # name of the env var holding the key (never the key)
    concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
    retry_wait_s: float = Field(1.0, gt=0)  # first backoff; doubles per retry (jittered, max 30 s)
    # openai: what the server supports (true / false / auto = probed once per engine), and
    # how many sampled replies `choose` reads when it can neither constrain nor score
    capabilities: EndpointCapabilities = EndpointCapabilities()
    choice_samples: int = Field(4, ge=0)
    # template: programmatic generator, nothing to configure beyond the seed in requests
    # GPU placement (hf/vllm): the devices this role's stages see, e.g. "0,1,2,3"; set as
    # CUDA_VISIBLE_DEVICES before CUDA starts (null: whatever the environment gives)
    gpus: str | None = Field(None, pattern=r"^\d+(,\d+)*$")
    # hf/vllm data parallelism: one process per replica, each on its own GPUs, e.g.
    # ["0", "1", "2", "3"] or ["0,1", "2,3"]; requests split evenly (engines/executors/replicas.py)
    replicas: list[str] = Field(default_factory=list)
    # openai policy: the checkpoint directory the endpoint must serve (set by the stages
    # to data/iter_j/model); its content hash joins the cache identity
    checkpoint: str | None = None
    # Where the backend runs: in this process, or as replicas on a Ray cluster (hf: an
    # actor pool; vllm: ray.data.llm); the driver still owns the request cache.
    executor: Literal["local", "ray"] = "local"
    ray: RaySpec = RaySpec()
    # oracle: the dry-run engine's label tables and error rates (no model)
    oracle: OracleSpec = OracleSpec()

    @model_validator(mode="after")
    def _ray_backend(self) -> EngineSpec:
        if self.executor == "ray" and self.backend not in ("hf", "vllm"):
            raise ValueError(
                f"executor 'ray' runs hf or vllm replicas, not backend {self.backend!r}"
            )
        return self

    @model_validator(mode="after")
    def _backend_fields(self) -> EngineSpec:
        if self.backend in ("hf", "vllm") and not self.model:
            raise ValueError(
                f"backend {self.backend!r} needs `model`: a local checkpoint directory"
            )
        if self.backend == "openai":
            if not self.base_url:
                raise ValueError(
                    "backend 'openai' needs `base_url` (e.g. http://127.0.0.1:8000/v1)"
                )
            if not self.model:
                raise ValueError("backend 'openai' needs `model`: the served model name")
        if self.backend == "oracle" and not self.oracle.tables:
            raise ValueError(
                "backend 'oracle' needs `oracle.tables`: the label tables it answers from"
            )
        bad = [r for r in self.replicas if not re.fullmatch(r"\d+(,\d+)*", r)]
        if bad:
            raise ValueError(f"replicas: each entry is a GPU list like '0' or '0,1', got {bad}")
        if self.data_parallel_size > 1 and self.backend == "vllm":
            raise ValueError(
                "vllm data_parallel_size > 1 is not supported by offline vllm.LLM 0.31; "
                "run one process per replica (split the input) instead"
            )
        return self


class TinyModelParams(BaseModel):
    """`engines.tiny_model`: the locally built random Qwen3 for tests and the CPU default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: str = "data/tiny_model"
    seed: int = 0
    vocab_size: int = Field(3072, ge=512, le=32768)
    hidden_size: int = Field(128, ge=16)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(384, ge=16)
    max_position_embeddings: int = Field(8192, ge=256)
    corpus_samples: int = Field(3000, ge=100)  # generated chats the tokenizer is trained on
    # A SAMPLES table whose rendered prompts + labels are added to the tokenizer's training
    # text (the CPU default: D_seed's training split), so the tokenizer fits the task's
    # vocabulary; null = the generated chats only.
    corpus: str | None = None
    # "words": GPT-2 style word split before BPE. "none": BPE over whole texts, so merges
    # may span punctuation and spaces (recurring JSON / template text becomes few tokens).
    # "punct": words and punctuation runs split apart (JSON structure tokens stay clean).
    pretokenizer: Literal["words", "none", "punct"] = "words"
    max_token_length: int | None = Field(None, ge=2)  # longest merge in chars (null: no cap)

    @model_validator(mode="after")
    def _heads(self) -> TinyModelParams:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size % num_heads and num_heads % num_kv_heads must be 0")
        return self


CheckpointName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class RoleCheckpoints(BaseModel):
    """`engines.role_checkpoints`: every local checkpoint folder the judge and generator
    read (``model`` / ``tokenizer`` of engines.judge, loop.judge.models, engines.generator),
    by a name of your choice: dvc.yaml's ``<role>_checkpoint@<name>`` stage depends on the
    path (DVC follows a symlink and a path outside the repo; an unchanged folder costs a
    stat per file), so the stages using the role rerun when its bytes change. Pipeline-
    built checkpoints (data/tiny_model) are direct dependencies and are not listed.
    check_params keeps these lists equal to the roles' specs (params/tracked.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judge: dict[CheckpointName, str] = {}
    generator: dict[CheckpointName, str] = {}


class EnginesParams(BaseModel):
    """The `engines:` section: one spec per role, the cache switch, the tiny model recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: EngineSpec = EngineSpec(backend="hf", model="data/tiny_model", batch_size=16)
    judge: EngineSpec = EngineSpec(backend="hf", model="data/tiny_model", batch_size=16)
    generator: EngineSpec = EngineSpec(backend="template", batch_size=1024)
    # Route LLM requests through the request cache (its directory is project.cache_dir).
    use_cache: bool = True
    tiny_model: TinyModelParams = TinyModelParams()
    # Pretrained models converted from GGUF files in installed packages (stage
    # import_model@<name>); empty in the CPU default, SmolLM2 in params.smol.yaml.
    imports: dict[str, ModelImport] = {}
    role_checkpoints: RoleCheckpoints = RoleCheckpoints()

    def role(self, name: str) -> EngineSpec:
        if name not in ("policy", "judge", "generator"):
            raise KeyError(f"unknown engine role {name!r} (policy, judge, generator)")
        return getattr(self, name)
