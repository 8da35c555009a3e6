"""An `openai`-backend policy tied to its checkpoint.

A served policy keeps one endpoint across iterations, so its identity must carry the
checkpoint: ``engines.policy.checkpoint`` (set by the stages to ``data/iter_j/model``)
adds the checkpoint's content fingerprint to the engine's cache identity (probe@2 never
reuses iteration 1's answers), and the endpoint's ``/models`` list must show that the
server loaded this very directory (vLLM reports the path it was started with as ``root``);
otherwise the stage refuses to run, naming what is served and the command to serve the
right checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from looptool.engines.base import EngineError
from looptool.engines.factory import model_fingerprint
from looptool.params.engines import EngineSpec


def served_models(spec: EngineSpec) -> list[dict[str, Any]]:
    """The endpoint's ``GET /models`` entries (EngineError when it does not answer)."""
    assert spec.base_url
    url = spec.base_url.rstrip("/") + "/models"
    try:
        resp = httpx.get(url, timeout=min(spec.timeout_s, 30.0))
        resp.raise_for_status()
        return list(resp.json().get("data") or [])
    except (httpx.HTTPError, ValueError) as exc:
        raise EngineError(f"openai policy: cannot list models at {url}: {exc}") from None


def check_served_checkpoint(spec: EngineSpec, entries: list[dict[str, Any]]) -> None:
    """EngineError unless ``spec.model`` is served from ``spec.checkpoint``."""
    assert spec.checkpoint
    want = Path(spec.checkpoint).resolve()
    entry = next((e for e in entries if e.get("id") == spec.model), None)
    if entry is None:
        served = ", ".join(str(e.get("id")) for e in entries) or "nothing"
        raise EngineError(
            f"openai policy: {spec.base_url} does not serve {spec.model!r} (it serves {served})"
        )
    root = entry.get("root")
    if not root or Path(str(root)).resolve() != want:
        raise EngineError(
            f"openai policy: {spec.base_url} serves {spec.model!r} from {root}, not from this "
            f"iteration's checkpoint {spec.checkpoint}; restart it with `vllm serve "
            f"{spec.checkpoint} --served-model-name {spec.model}`"
        )


def checkpoint_identity(spec: EngineSpec, model_id: str) -> str:
    """``model_id`` with the checkpoint's content fingerprint (the cache identity)."""
    assert spec.checkpoint
    return f"{model_id}+ckpt@{model_fingerprint(spec.checkpoint)}"


def tie_to_checkpoint(engine: Any, spec: EngineSpec) -> None:
    """Refuse a server that is not serving ``spec.checkpoint``; put the checkpoint's
    fingerprint into ``engine.model_id`` (before the request cache wraps it)."""
    check_served_checkpoint(spec, served_models(spec))
    engine.model_id = checkpoint_identity(spec, engine.model_id)
