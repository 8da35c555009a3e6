"""``train.algorithm: noop``: the dry run's training step (params.paper-scale.yaml).

Nothing is trained. train@j writes a placeholder checkpoint of
``train.noop.checkpoint_bytes`` into data/iter_j/model through the temp-dir-and-rename
path real training uses (:func:`~looptool.loop.train_setup.checkpoint_temp`,
:func:`~looptool.loop.train_setup.commit_checkpoint`), so DVC hashes, caches and links a
file the size of a real checkpoint and every downstream stage runs. The weights file
starts with a 4 KB header derived from the dataset and the starting checkpoint (every
iteration's bytes differ, as after training); the rest is a hole when ``sparse`` (no
disk blocks on filesystems with sparse files: ``allocated_bytes`` in the metrics says
what the filesystem did) or written out in full. No model loads it: only the oracle
policy backend serves it (params refuse noop with any other).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from looptool.loop.live import write_empty_live
from looptool.loop.train_setup import TrainResult, checkpoint_temp, commit_checkpoint
from looptool.params.train import NoopParams
from looptool.store.io import sha256_file

WEIGHTS = "noop_weights.bin"
HEADER = 4096
_BLOCK = 1 << 20


def _start_id(start: Path) -> str:
    """The starting checkpoint's identity: its weights header (noop) or its config."""
    for name in (WEIGHTS, "config.json"):
        if (start / name).is_file():
            with open(start / name, "rb") as fh:
                return hashlib.sha256(fh.read(HEADER)).hexdigest()
    return ""


def write_placeholder(out_dir: Path, size: int, sparse: bool, key: str) -> dict:
    """Write ``out_dir`` (config.json + weights of ``size`` bytes) atomically; returns
    the sizes: apparent and allocated (st_blocks) bytes of the weights file."""
    tmp = checkpoint_temp(out_dir)
    tmp.mkdir(parents=True)
    header = b"".join(hashlib.sha256(f"{key}:{i}".encode()).digest() for i in range(HEADER // 32))
    with open(tmp / WEIGHTS, "wb") as fh:
        fh.write(header[: min(HEADER, size)])
        if sparse:
            fh.truncate(size)
        else:
            block = (header * (_BLOCK // len(header)))[:_BLOCK]
            left = size - fh.tell()
            while left > 0:
                left -= fh.write(block[: min(left, _BLOCK)])
        fh.flush()
        os.fsync(fh.fileno())
    config = {"model_type": "noop", "dry_run": True, "weights": WEIGHTS, "bytes": size}
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    st = os.stat(tmp / WEIGHTS)
    commit_checkpoint(tmp, out_dir)
    return {"checkpoint_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512}


def train_noop(
    dataset: str | os.PathLike,
    start: str | os.PathLike,
    out_dir: str | os.PathLike,
    params: NoopParams,
    *,
    live_dir: str | os.PathLike,
) -> TrainResult:
    """The placeholder checkpoint for ``dataset`` after ``start`` (see the module doc)."""
    t0 = time.perf_counter()
    key = f"{sha256_file(dataset)}:{_start_id(Path(start))}"
    sizes = write_placeholder(Path(out_dir), params.checkpoint_bytes, params.sparse, key)
    write_empty_live(live_dir)
    metrics = {
        "steps": 0,
        "noop": True,
        **sizes,
        "sparse_on_disk": sizes["allocated_bytes"] < sizes["checkpoint_bytes"],
        "runtime_s": round(time.perf_counter() - t0, 3),
    }
    return TrainResult(metrics)
