"""executor: ray vs local on the same requests: hf requests/s in this process vs two
1-CPU hf replicas on a local Ray cluster, and Ray's own per-request overhead (requests
shipped to an actor that echoes them back, no model).

    python bench/ray_executor.py [--n 64] [--max-tokens 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray

from looptool.engines.cache import CachedEngine
from looptool.engines.cache_store import RequestCache
from looptool.engines.factory import make_engine
from looptool.engines.smoke import smoke_requests
from looptool.loop.tiny_model import build_tiny_model
from looptool.params.engines import EngineSpec


class Echo:
    """Returns its requests: a round trip with Ray's serialization and scheduling only."""

    def run(self, kind: str, requests: list) -> list:
        return requests


def _rate(engine: CachedEngine, requests: list) -> float:
    t = time.perf_counter()
    engine.generate(requests)
    assert engine.stats()["backend_requests"] == len(requests)  # nothing from the cache
    return len(requests) / (time.perf_counter() - t)


def _echo_ms(requests: list, replicas: int, chunk: int) -> float:
    """Per-request milliseconds of the executor's dispatch (chunks, two in flight per
    actor) when the actors do nothing."""
    actors = [ray.remote(num_cpus=1)(Echo).remote() for _ in range(replicas)]
    ray.get([a.run.remote("generate", []) for a in actors])  # started
    t = time.perf_counter()
    chunks = [requests[i : i + chunk] for i in range(0, len(requests), chunk)]
    pending = [actors[k % replicas].run.remote("generate", c) for k, c in enumerate(chunks)]
    while pending:
        _, pending = ray.wait(pending, num_returns=1)
    ms = (time.perf_counter() - t) * 1e3 / len(requests)
    for a in actors:
        ray.kill(a)
    return ms


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="generate requests")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    requests, _, _ = smoke_requests(args.n, max_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", seed=0)
        base = {"backend": "hf", "model": str(model_dir), "batch_size": args.batch_size}
        base |= {"device": "cpu", "cpu_threads": 1}

        def engine(name: str, **extra) -> CachedEngine:
            cache = RequestCache(Path(tmp) / f"{name}.sqlite")
            eng = make_engine(EngineSpec(**base, **extra), "policy", cache)
            eng.progress = False
            return eng

        local = _rate(engine("local"), requests)
        t = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_eng = engine("ray", executor="ray", ray={"replicas": 2, "num_cpus": 1})
        startup = time.perf_counter() - t
        remote = _rate(ray_eng, requests)
        ray_eng.inner.close()
        echo = _echo_ms(requests, replicas=2, chunk=args.batch_size)
        ray.shutdown()
    title = f"{args.n} generate requests, tiny model, max_tokens {args.max_tokens}"
    print(f"{title:<52} {'value':>10}")
    print("-" * 64)
    print(f"{'local hf, 1 thread (requests/s)':<52} {local:>10.2f}")
    print(f"{'ray, 2 x 1-CPU hf replicas (requests/s)':<52} {remote:>10.2f}")
    print(f"{'ray speed-up over local':<52} {remote / local:>10.2f}")
    print(f"{'ray start + replicas loaded (s, once per stage)':<52} {startup:>10.2f}")
    print(f"{'ray per-request overhead, echo actors (ms)':<52} {echo:>10.3f}")


if __name__ == "__main__":
    main()
