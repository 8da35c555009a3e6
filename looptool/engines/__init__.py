"""One engine protocol (base), four backends (backends/: hf, vllm, openai, template), two
executors (executors/: local replicas, Ray), one request cache (cache, cache_store), and the
factory that knows them all.

Importing this package is cheap: torch/transformers/vllm/httpx load only when a backend
is built by :func:`make_engine`.
"""

from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    Engine,
    EngineError,
    Failed,
    Generation,
    SamplingParams,
    Score,
    ScoreRequest,
    StreamingEngine,
    is_failed,
)
from looptool.engines.cache import CachedEngine, cache_stats
from looptool.engines.cache_store import RequestCache, default_cache_dir
from looptool.engines.checkpoint import check_model_dir, model_fingerprint
from looptool.engines.factory import engine_for_role, make_engine

__all__ = [
    "CachedEngine",
    "ChatRequest",
    "ChoiceRequest",
    "Engine",
    "EngineError",
    "Failed",
    "Generation",
    "RequestCache",
    "SamplingParams",
    "Score",
    "ScoreRequest",
    "StreamingEngine",
    "cache_stats",
    "check_model_dir",
    "default_cache_dir",
    "engine_for_role",
    "is_failed",
    "make_engine",
    "model_fingerprint",
]
