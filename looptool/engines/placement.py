"""GPU placement per role and engine lifetime: which devices a stage's engines see, and
closing an engine before the next one opens.

A role's ``gpus`` (EngineSpec) becomes the stage's CUDA_VISIBLE_DEVICES before CUDA
starts in the process (``torch.cuda`` initializes lazily, at the first engine or tensor
on a GPU), so a judge on GPUs 4-7 and a policy on GPU 0 never share devices. A stage
whose engines run one after another (several judges, EDDE's generator then verifier) sees
the union of their devices; each engine is closed (vLLM frees its memory) before the next
opens, since vLLM allows one engine per process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from looptool.engines.base import Engine, EngineError
from looptool.params.engines import EngineSpec

LOCAL_BACKENDS = ("hf", "vllm")  # backends that load weights in this process
EngineSource = Engine | Callable[[], Engine]  # an open engine, or one to open when needed


def stage_specs(params: Any, stage: str) -> list[EngineSpec]:
    """The engine specs a stage opens (``params``: the iteration's Params): probe and eval
    the policy; judge every majority-vote judge; expand the generator, plus the judge when
    it verifies children; seed stages the roles their agents / tiers name."""
    eng, loop, seed = params.engines, params.loop, params.seed
    if stage in ("probe", "eval"):
        return [eng.policy]
    if stage == "judge":
        return list(loop.judge.models) or [eng.judge]
    if stage == "expand":
        return [eng.generator] + ([eng.judge] if loop.expand.llm_verify == "judge" else [])
    refs: list[str] = {
        "seed_apis": [seed.apis.engine],
        "seed_dialogues": list(seed.dialogues.agents.model_dump().values()),
        "seed_verify": [seed.verify.llm_tier],
    }.get(stage, [])
    roles = dict.fromkeys(r for r in refs if r in ("policy", "judge", "generator"))
    return [eng.role(r) for r in roles]


def stage_gpus(specs: Iterable[EngineSpec]) -> str | None:
    """The devices of the local-backend specs that name ``gpus`` (first-seen order), or
    None when none does."""
    seen: dict[str, None] = {}
    for spec in specs:
        if spec.backend not in LOCAL_BACKENDS:
            continue
        for gpus in (spec.gpus, *spec.replicas):  # replicas: each worker narrows it further
            if gpus:
                seen.update(dict.fromkeys(gpus.split(",")))
    return ",".join(seen) if seen else None


def cuda_started() -> bool:
    """Whether this process has already initialized CUDA (then devices are fixed)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def apply_gpus(
    specs: Iterable[EngineSpec], stage: str, env: MutableMapping[str, str] | None = None
) -> str | None:
    """Set CUDA_VISIBLE_DEVICES for ``stage`` from its engines' ``gpus``; returns what was
    set (None: left alone). EngineError when CUDA already started on other devices."""
    env = os.environ if env is None else env
    gpus = stage_gpus(specs)
    if gpus is None:
        return None
    current = env.get("CUDA_VISIBLE_DEVICES")
    if current != gpus and cuda_started():
        raise EngineError(
            f"{stage}: engines ask for GPUs {gpus} but CUDA already started in this process "
            f"on {current or 'all devices'}; placement must happen before any engine opens"
        )
    env["CUDA_VISIBLE_DEVICES"] = gpus
    return gpus


def open_source(source: EngineSource) -> Engine:
    """The engine of ``source`` (opened now when it is an opener)."""
    return source() if callable(source) else source


def close_engine(engine: Any) -> None:
    """Close ``engine`` when its backend holds resources (vLLM: GPU memory)."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()
