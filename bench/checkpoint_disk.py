"""Benchmark: bytes on disk per iteration for DVC-tracked checkpoints, per cache setting.

A throw-away DVC project whose `train@j` stages (j = 1..K) each write a checkpoint: a
weights file of ``--size-mb`` random bytes (different per iteration, as after training)
plus a 1 MB tokenizer file identical in every iteration. Runs them one by one and after
each prints the blocks used by data/ plus .dvc/cache (every inode counted once), for:

- ``reflink,copy``: DVC's default; on a filesystem without reflinks (ext4) a full copy;
- ``hardlink,symlink,copy``: this repository's .dvc/config;
- the same plus ``looptool gc --keep-last 1`` after every iteration.

Also the wall time of each `dvc repro train@j` (hashing + commit; noisy on a busy box).

    .venv/bin/python -m bench.checkpoint_disk [--size-mb 64] [--iters 4] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WRITE = (
    "import os, random, sys; out, j, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]); "
    "os.makedirs(out); chunk = random.Random(j).randbytes(1 << 20); "
    "f = open(os.path.join(out, 'model.safetensors'), 'wb'); [f.write(chunk) for _ in range(mb)]; "
    "f.close(); open(os.path.join(out, 'tokenizer.json'), 'wb').write(random.Random(0).randbytes(1 << 20))"
)
SETTINGS = (
    ("reflink,copy (DVC default)", "reflink,copy", False),
    ("hardlink,symlink,copy", "hardlink,symlink,copy", False),
    ("hardlink,... + gc --keep-last 1", "hardlink,symlink,copy", True),
)


def bytes_on_disk(*dirs: Path) -> int:
    seen: dict[tuple[int, int], int] = {}
    for d in dirs:
        for dirpath, _, files in os.walk(d):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")


def run_setting(where: Path, cache_type: str, gc: bool, iters: int, mb: int) -> list[tuple]:
    root = Path(tempfile.mkdtemp(prefix="ckpt-disk-", dir=where))
    try:
        stage = {
            "foreach": list(range(1, iters + 1)),
            "do": {
                "cmd": f'{sys.executable} -c "{WRITE}" data/iter_${{item}}/model ${{item}} {mb}',
                "outs": ["data/iter_${item}/model"],
            },
        }
        (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
        _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], root)
        _run([sys.executable, "-m", "dvc", "config", "cache.type", cache_type], root)
        rows = []
        for j in range(1, iters + 1):
            t0 = time.perf_counter()
            _run([sys.executable, "-m", "dvc", "repro", "-q", f"train@{j}"], root)
            dt = time.perf_counter() - t0
            if gc:
                _run([sys.executable, "-m", "looptool.cli", "gc", "--keep-last", "1"], root)
            rows.append((j, bytes_on_disk(root / "data", root / ".dvc" / "cache"), dt))
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64, help="weights per checkpoint (MB)")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None, help="where the projects go (its fs)")
    args = ap.parse_args(argv if argv is not None else [])
    where = args.dir or Path(tempfile.gettempdir())
    ckpt = (args.size_mb + 1) << 20  # weights + tokenizer
    load = os.getloadavg()[0]
    print(
        f"checkpoint {args.size_mb} MB weights + 1 MB tokenizer, {args.iters} iterations, "
        f"in {where} (load {load:.1f}); bytes on disk of data/ + .dvc/cache"
    )
    head = " ".join(f"{'iter ' + str(j):>14}" for j in range(1, args.iters + 1))
    print(f"{'cache setting':<34}{head}   repro s/iter")
    for name, cache_type, gc in SETTINGS:
        rows = run_setting(where, cache_type, gc, args.iters, args.size_mb)
        cells = " ".join(f"{b / 1e6:>8.0f} MB {b / ckpt:>3.1f}x" for _, b, _ in rows)
        mean = sum(dt for *_, dt in rows) / len(rows)
        print(f"{name:<34}{cells}   {mean:>6.1f}", flush=True)
    print("(Nx = multiples of one checkpoint's size)")


if __name__ == "__main__":
    main(sys.argv[1:])
