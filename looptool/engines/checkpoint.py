"""A model directory's identity: the check that a path is a local checkpoint, and the
content fingerprint that keys its cached requests and its DVC record."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from looptool.engines.base import EngineError

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
