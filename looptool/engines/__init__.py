"""One engine protocol (base), four backends (hf, vllm, openai, template), one request cache.

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
from looptool.engines.cache import CachedEngine, RequestCache, cache_stats, default_cache_dir
from looptool.engines.factory import (
    check_model_dir,
    engine_for_role,
    make_engine,
    model_fingerprint,
)

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
