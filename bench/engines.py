"""Engine benchmarks: hf greedy tokens/s and scoring sequences/s on the tiny model, and
the request cache's per-request overhead (target: < 1 ms per lookup).

    python bench/engines.py [--n 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from looptool.engines.backends.hf import HFEngine
from looptool.engines.base import Generation
from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.engines.smoke import format_table, run_smoke, smoke_requests
from looptool.loop.tiny_model import build_tiny_model
from looptool.params.engines import EngineSpec


class _Instant:
    """A backend that answers at once, so only the cache's own cost is timed."""

    backend, model_id = "bench", "bench@0"

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def generate(self, reqs):
        return [
            [Generation(text="x" * 200, token_ids=list(range(60)), finish_reason="stop")]
            for _ in reqs
        ]


def bench_cache(n: int, workdir: Path) -> list[tuple[str, float]]:
    chats, _, _ = smoke_requests(n, max_tokens=64)  # realistic size: tools + chat (~2 KB JSON)
    with RequestCache(workdir / "requests.sqlite") as cache:
        eng = CachedEngine(_Instant(batch_size=64), cache, progress=False)
        t = time.perf_counter()
        eng.generate(chats)
        miss = (time.perf_counter() - t) / n
        t = time.perf_counter()
        eng.generate(chats)
        hit = (time.perf_counter() - t) / n
        assert eng.stats()["cache_hits"] == n
    return [
        ("cache miss + store (per request)", miss * 1e3),
        ("cache hit lookup (per request)", hit * 1e3),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="requests per kind")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cache-n", type=int, default=2000)
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model_dir = build_tiny_model(Path(tmp) / "tiny", seed=0)
        build_s = time.perf_counter() - t
        print(f"tiny model built in {build_s:.2f} s ({model_dir})\n")
        for threads in sorted({1, default_threads}):
            spec = EngineSpec(
                backend="hf",
                model=str(model_dir),
                batch_size=args.batch_size,
                device="cpu",
                cpu_threads=threads,
            )
            eng = HFEngine(model_dir, spec, progress=False)
            run_smoke(eng, n=4, max_tokens=4)  # warm-up
            rows = run_smoke(eng, n=args.n, max_tokens=args.max_tokens)
            print(
                format_table(
                    rows, f"hf on the tiny model, batch {args.batch_size}, {threads} CPU thread(s)"
                )
            )
            print()
        torch.set_num_threads(default_threads)
        cache_rows = bench_cache(args.cache_n, Path(tmp))
    print(f"{'request cache, ' + str(args.cache_n) + ' requests':<34} {'ms':>8}  target")
    print("-" * 52)
    for name, ms in cache_rows:
        print(f"{name:<34} {ms:>8.3f}  {'< 1 ms' if 'hit' in name else ''}")


if __name__ == "__main__":
    main()
