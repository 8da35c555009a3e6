"""Engine helpers for the DVC stages that open one: GPU placement, the role's engine
behind the request cache, and the engine facts a stage's metrics record."""

from __future__ import annotations

import sys

from looptool.engines import factory
from looptool.engines.base import Engine, EngineError
from looptool.params import Params
from looptool.params.engines import EngineSpec


def place_gpus(params: Params, stage: str, j: int | None = None) -> None:
    """CUDA_VISIBLE_DEVICES for this stage from its engines' ``gpus`` (before CUDA starts)."""
    from looptool.engines.placement import apply_gpus, stage_specs

    name = stage if j is None else f"{stage}@{j}"
    try:
        gpus = apply_gpus(stage_specs(params, stage), name)
    except EngineError as exc:
        sys.exit(f"error: {exc}")
    if gpus is not None:
        print(f"{name}: CUDA_VISIBLE_DEVICES={gpus}")


def open_engine(params: Params, spec: EngineSpec, role: str) -> Engine:
    """The role's engine behind the request cache (when `engines.use_cache`)."""
    return factory.open_engine(
        spec, role, use_cache=params.engines.use_cache, cache_dir=params.project.cache_dir
    )


def engine_stats(engine: Engine) -> dict:
    """Model identity plus cache hits/misses, for a stage's metrics."""
    stats = engine.stats() if hasattr(engine, "stats") else {}
    # openai backend: the endpoint's capabilities as declared or probed (#14)
    caps = getattr(engine, "capabilities", None)
    stats = {**stats, "capabilities": caps} if isinstance(caps, dict) else stats
    return {"model": engine.model_id, "backend": engine.backend, **stats}
