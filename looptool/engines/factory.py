"""Build the engine for a role from its EngineSpec (backends are imported lazily)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from looptool.engines.base import Engine, EngineError
from looptool.engines.cache import CachedEngine, RequestCache
from looptool.params.engines import EnginesParams, EngineSpec

# Files at most this big are hashed whole; bigger ones by size + evenly spaced blocks, so
# fingerprinting a 16 GB checkpoint stays cheap while any retrained weights still change it.
_FULL_HASH_MAX = 8 << 20
_BLOCK = 64 << 10
_N_BLOCKS = 32


def check_model_dir(path: str | None, param: str) -> Path:
    """Return ``path`` as a local checkpoint directory or raise an error naming ``param``."""
    if not path:
        raise EngineError(f"{param}: no model path given")
    p = Path(path).expanduser()
    if not p.exists():
        hint = ""
        if not p.is_absolute() and path.count("/") == 1 and not path.startswith("."):
            hint = " (looks like a hub id; LoopTool never downloads: give a local directory)"
        raise EngineError(f"{param}: path does not exist: {path}{hint}")
    if not p.is_dir():
        raise EngineError(f"{param}: not a directory (need a checkpoint directory): {path}")
    if not (p / "config.json").exists():
        raise EngineError(f"{param}: no config.json in {path}: not a transformers checkpoint")
    return p


def _hash_file(h: hashlib._Hash, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_MAX:
            h.update(fh.read())
            return
        step = (size - _BLOCK) // (_N_BLOCKS - 1)
        for i in range(_N_BLOCKS):
            fh.seek(i * step)
            h.update(fh.read(_BLOCK))


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """Content fingerprint of a checkpoint directory (weights, config, tokenizer files)."""
    h = hashlib.sha256()
    root = Path(model_dir)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # .cache/, lock files and the like are not model content
        h.update(str(rel).encode() + b"\0")
        _hash_file(h, f)
    return h.hexdigest()[:16]


def make_engine(spec: EngineSpec, role: str, cache: RequestCache | None = None) -> Engine:
    """Instantiate the backend named by ``spec`` for ``role``; wrap it in the request cache.

    The template backend is never cached: it is cheap and deterministic, and a cached
    answer would go stale whenever its code changes.
    """
    param = f"engines.{role}"
    engine: Engine
    if spec.executor == "ray":  # replicas on a Ray cluster; the cache stays here (#17)
        from looptool.engines.ray_executor import ray_engine

        engine = ray_engine(spec, param)
    elif spec.replicas and spec.backend in ("hf", "vllm"):
        check_model_dir(spec.model, f"{param}.model")
        from looptool.engines.replicas import ReplicaEngine

        engine = ReplicaEngine(spec, role)  # one process per replica (data parallel)
    elif spec.backend == "hf":
        model_dir = check_model_dir(spec.model, f"{param}.model")
        tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
        from looptool.engines.hf import HFEngine

        engine = HFEngine(model_dir, spec, tokenizer_dir=tok_dir)
    elif spec.backend == "vllm":
        model_dir = check_model_dir(spec.model, f"{param}.model")
        tok_dir = check_model_dir(spec.tokenizer, f"{param}.tokenizer") if spec.tokenizer else None
        from looptool.engines.vllm_backend import VLLMEngine

        engine = VLLMEngine(model_dir, spec, tokenizer_dir=tok_dir)
    elif spec.backend == "openai":
        from looptool.engines.openai_backend import OpenAIEngine

        engine = OpenAIEngine(spec, role=role)
        if spec.checkpoint:  # a served policy: tied to its checkpoint (engines/served.py)
            from looptool.engines.served import tie_to_checkpoint

            tie_to_checkpoint(engine, spec, cache.path.parent if cache is not None else None)
    elif spec.backend == "template":
        from looptool.engines.template import TemplateEngine

        return TemplateEngine(batch_size=spec.batch_size)
    else:  # pragma: no cover - pydantic's Literal rejects anything else
        raise EngineError(f"{param}.backend: unknown backend {spec.backend!r}")
    return CachedEngine(engine, cache, role=role) if cache is not None else engine


def engine_for_role(engines: EnginesParams, role: str, cache_dir: str | None = None) -> Engine:
    """The engine of ``role`` from the `engines:` params section, wrapped in the request
    cache at ``cache_dir`` (params `project.cache_dir`; env LOOPTOOL_CACHE_DIR wins) unless
    ``engines.use_cache`` is off. A cached engine's ``.stats()`` go into stage metrics."""
    return open_engine(engines.role(role), role, use_cache=engines.use_cache, cache_dir=cache_dir)


def open_engine(spec: EngineSpec, role: str, *, use_cache: bool, cache_dir: str | None) -> Engine:
    """``make_engine`` behind the request cache at ``cache_dir`` when ``use_cache``."""
    cache = RequestCache.open(cache_dir) if use_cache else None
    return make_engine(spec, role, cache)
