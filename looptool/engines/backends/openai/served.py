"""An `openai`-backend policy tied to its checkpoint.

A served policy keeps one endpoint across iterations, so its identity must carry the
checkpoint: ``engines.policy.checkpoint`` (set by the stages to ``data/iter_j/model``)
adds the checkpoint's content fingerprint to the engine's cache identity (probe@2 never
reuses iteration 1's answers).

The server must also hold those very weights. A path alone cannot show that: train@j
rewrites ``data/iter_j/model`` in place, and a server started on it before still serves
the old weights under the same path. So the server is started on a name that carries the
content: :func:`served_path` is a link ``<cache dir>/served/<iter>-<name>-<fingerprint>``
to the checkpoint, and the endpoint's ``/models`` entry (vLLM reports the path it was
started with as ``root``) must name the link of the checkpoint's current content;
otherwise the stage refuses to run, naming what is served and the command to serve the
right weights. ``/models`` is asked with the endpoint's API key (``api_key_env``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from looptool.engines.base import EngineError
from looptool.engines.cache_store import default_cache_dir
from looptool.engines.checkpoint import model_fingerprint
from looptool.params.engines import EngineSpec


def _headers(spec: EngineSpec) -> dict[str, str]:
    if not spec.api_key_env:
        return {}
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise EngineError(f"api_key_env: environment variable {spec.api_key_env} is not set")
    return {"Authorization": f"Bearer {key}"}


def served_models(spec: EngineSpec) -> list[dict[str, Any]]:
    """The endpoint's ``GET /models`` entries (EngineError when it does not answer)."""
    assert spec.base_url
    url = spec.base_url.rstrip("/") + "/models"
    try:
        resp = httpx.get(url, headers=_headers(spec), timeout=min(spec.timeout_s, 30.0))
        resp.raise_for_status()
        return list(resp.json().get("data") or [])
    except (httpx.HTTPError, ValueError) as exc:
        raise EngineError(f"openai policy: cannot list models at {url}: {exc}") from None


def served_path(
    spec: EngineSpec, cache_dir: str | os.PathLike | None = None, fingerprint: str | None = None
) -> Path:
    """The name to serve ``spec.checkpoint`` under: a link, named by the checkpoint's
    content fingerprint (computed unless given), to the checkpoint directory (created or
    updated here)."""
    assert spec.checkpoint
    ck = Path(spec.checkpoint).resolve()
    name = f"{ck.parent.name}-{ck.name}-{fingerprint or model_fingerprint(ck)}"
    link = default_cache_dir(cache_dir) / "served" / name
    if link.is_symlink() and Path(os.readlink(link)) == ck:
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(ck, target_is_directory=True)
    os.replace(tmp, link)
    return link


def check_served_checkpoint(spec: EngineSpec, entries: list[dict[str, Any]], link: Path) -> None:
    """EngineError unless ``spec.model`` is served from ``link`` (:func:`served_path`),
    the name of the checkpoint's current content."""
    assert spec.checkpoint
    entry = next((e for e in entries if e.get("id") == spec.model), None)
    if entry is None:
        served = ", ".join(str(e.get("id")) for e in entries) or "nothing"
        raise EngineError(
            f"openai policy: {spec.base_url} does not serve {spec.model!r} (it serves {served})"
        )
    root = entry.get("root")
    if not root or Path(str(root)).name != link.name:
        raise EngineError(
            f"openai policy: {spec.base_url} serves {spec.model!r} from {root}, not from this "
            f"iteration's checkpoint {spec.checkpoint} as it is now (content "
            f"{link.name.rsplit('-', 1)[-1]}); restart it with `vllm serve {link} "
            f"--served-model-name {spec.model}` (the link names the weights, so a server "
            "holding older ones is caught)"
        )


def checkpoint_identity(spec: EngineSpec, model_id: str, fingerprint: str | None = None) -> str:
    """``model_id`` with the checkpoint's content fingerprint (the cache identity)."""
    assert spec.checkpoint
    return f"{model_id}+ckpt@{fingerprint or model_fingerprint(spec.checkpoint)}"


def tie_to_checkpoint(
    engine: Any, spec: EngineSpec, cache_dir: str | os.PathLike | None = None
) -> None:
    """Refuse a server that is not serving ``spec.checkpoint``'s current weights; put the
    checkpoint's fingerprint into ``engine.model_id`` (before the request cache wraps it)."""
    assert spec.checkpoint
    fp = model_fingerprint(spec.checkpoint)  # hashes every weight file: once
    link = served_path(spec, cache_dir, fp)
    check_served_checkpoint(spec, served_models(spec), link)
    engine.model_id = checkpoint_identity(spec, engine.model_id, fp)
