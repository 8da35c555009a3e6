"""Build the engine for a role from its EngineSpec (backends are imported lazily).

The one module that knows every backend (engines/backends/) and executor
(engines/executors/); nothing else in engines/ imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from looptool.engines.base import Engine, EngineError
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.engines.checkpoint import check_model_dir
from looptool.params.engines import EnginesParams, EngineSpec

if TYPE_CHECKING:
    from looptool.engines.executors.ray_executor import RayEngine


def make_engine(spec: EngineSpec, role: str, cache: RequestCache | None = None) -> Engine:
    """Instantiate the backend named by ``spec`` for ``role``; wrap it in the request cache.

    The template and oracle backends are never cached: they are cheap and deterministic,
    and a cached answer would go stale whenever their code changes.
    """
    param = f"engines.{role}"
    engine: Engine
    if spec.executor == "ray":  # replicas on a Ray cluster; the cache stays here (#17)
        engine = ray_engine(spec, param)
    elif spec.replicas and spec.backend in ("hf", "vllm"):
        check_model_dir(spec.model, f"{param}.model")
        from looptool.engines.executors.replicas import ReplicaEngine

        # one process per replica (data parallel); each builds its engine with make_engine
        engine = ReplicaEngine(spec, role, make_engine)
    elif spec.backend == "hf":
        model_dir = check_model_dir(spec.model, f"{param}.model")
        tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
        from looptool.engines.backends.hf import HFEngine

        engine = HFEngine(model_dir, spec, tokenizer_dir=tok_dir)
    elif spec.backend == "vllm":
        model_dir = check_model_dir(spec.model, f"{param}.model")
        tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
        from looptool.engines.backends.vllm import VLLMEngine

        engine = VLLMEngine(model_dir, spec, tokenizer_dir=tok_dir)
    elif spec.backend == "openai":
        from looptool.engines.backends.openai.engine import OpenAIEngine

        engine = OpenAIEngine(spec, role=role)
        if spec.checkpoint:  # a served policy: tied to its checkpoint (backends/openai/served.py)
            from looptool.engines.backends.openai.served import tie_to_checkpoint

            tie_to_checkpoint(engine, spec, cache.path.parent if cache is not None else None)
    elif spec.backend == "template":
        from looptool.engines.backends.template import TemplateEngine

        return TemplateEngine(batch_size=spec.batch_size)
    elif spec.backend == "oracle":  # the dry-run engine: instant, never cached either
        from looptool.engines.backends.oracle import OracleEngine

        return OracleEngine(spec.oracle, model=spec.model, batch_size=spec.batch_size)
    else:  # pragma: no cover - pydantic's Literal rejects anything else
        raise EngineError(f"{param}.backend: unknown backend {spec.backend!r}")
    return CachedEngine(engine, cache, role=role) if cache is not None else engine


def ray_engine(spec: EngineSpec, param: str) -> RayEngine:
    """The ``executor: ray`` engine for ``spec`` (hf: actor pool; vllm: ray.data.llm)."""
    model_dir = check_model_dir(spec.model, f"{param}.model")
    tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
    if spec.backend == "hf":
        from looptool.engines.executors.ray_executor import RayHFEngine

        return RayHFEngine(model_dir, spec, tokenizer_dir=tok_dir)
    if spec.backend == "vllm":
        from looptool.engines.executors.ray_vllm import RayVLLMEngine

        return RayVLLMEngine(model_dir, spec, tokenizer_dir=tok_dir)
    raise EngineError(f"{param}.executor: 'ray' runs hf or vllm, not {spec.backend!r}")


def engine_for_role(engines: EnginesParams, role: str, cache_dir: str | None = None) -> Engine:
    """The engine of ``role`` from the `engines:` params section, wrapped in the request
    cache at ``cache_dir`` (params `project.cache_dir`; env LOOPTOOL_CACHE_DIR wins) unless
    ``engines.use_cache`` is off. A cached engine's ``.stats()`` go into stage metrics."""
    return open_engine(engines.role(role), role, use_cache=engines.use_cache, cache_dir=cache_dir)


def open_engine(spec: EngineSpec, role: str, *, use_cache: bool, cache_dir: str | None) -> Engine:
    """``make_engine`` behind the request cache at ``cache_dir`` when ``use_cache``."""
    cache = RequestCache.open(cache_dir) if use_cache else None
    return make_engine(spec, role, cache)
