"""The evaluated policy: its engine for one checkpoint, and generation that survives
single bad requests (an over-long BFCL prompt fails that item, not the whole eval)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from looptool.engines.base import ChatRequest, Engine, EngineError, Failed, Generation
from looptool.engines.failures import failure_note
from looptool.params.engines import EngineSpec


def policy_spec(spec: EngineSpec, model_dir: str | Path) -> EngineSpec:
    """``engines.policy`` pointed at ``model_dir``: hf/vllm load it from disk; an openai
    endpoint must serve it (``checkpoint``, checked and hashed by engines/served.py)."""
    if spec.backend in ("hf", "vllm"):
        return spec.model_copy(update={"model": str(model_dir)})
    if spec.backend == "openai":
        return spec.model_copy(update={"checkpoint": str(model_dir)})
    return spec


def generate_answers(
    engine: Engine, requests: Sequence[ChatRequest], chunk: int | None = None
) -> list[tuple[str | None, str | None]]:
    """(text, None) or (None, error message) per request, in order.

    A request the engine answers with :class:`Failed` gets its reason as the error.
    Requests go in chunks; a chunk the engine rejects as a whole (EngineError) is retried
    one request at a time so only the offending requests are recorded as errors.
    """
    chunk = chunk or max(1, engine.batch_size) * 4
    out: list[tuple[str | None, str | None]] = []
    for start in range(0, len(requests), chunk):
        part = list(requests[start : start + chunk])
        try:
            out += [_answer(gens) for gens in engine.generate(part)]
            continue
        except EngineError:
            pass
        for req in part:
            try:
                out.append(_answer(engine.generate([req])[0]))
            except EngineError as exc:
                out.append((None, f"engine_error: {exc}"))
    return out


def _answer(gens: list[Generation] | Failed) -> tuple[str | None, str | None]:
    if isinstance(gens, Failed):
        return None, failure_note(gens)
    return gens[0].text, None
