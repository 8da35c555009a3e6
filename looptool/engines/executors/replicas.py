"""One-node data parallelism for hf / vllm roles: one process per replica, each on its
own GPUs (``EngineSpec.replicas``, e.g. ``["0", "1", "2", "3"]`` or ``["0,1", "2,3"]``).

A call's requests are split into contiguous, evenly sized blocks, one per replica; each
result comes back with its index, so the merged order is the request order whatever the
replicas' speeds. The request cache stays in the parent (one SQLite writer): it wraps
:class:`ReplicaEngine` like any streaming backend and commits each block as it returns.
Offline vLLM 0.31 takes no ``data_parallel_size`` > 1 (DESIGN §7); this is the
replacement it suggests.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from looptool.engines.base import Engine, EngineError, collect
from looptool.params.engines import EngineSpec

# What a replica process builds its engine with: (spec, role) -> engine, a module-level
# function so the spawn context can pickle it (the factory passes its make_engine).
EngineBuilder = Callable[[EngineSpec, str], Engine]

_START_TIMEOUT_S = 3600.0  # loading a large checkpoint on a busy node takes a while


def split_even(n: int, parts: int) -> list[range]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most 1."""
    size, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + size + (k < extra)
        out.append(range(start, stop))
        start = stop
    return out


def _worker(conn: Connection, spec: EngineSpec, role: str, gpus: str, build: EngineBuilder) -> None:
    # before anything imports torch: this process sees only its replica's devices
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        engine = build(spec.model_copy(update={"replicas": [], "gpus": gpus}), role)
        conn.send(("ready", engine.model_id))
    except Exception as exc:  # reported to the parent, which raises EngineError
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        job = conn.recv()
        if job is None:
            break
        kind, requests = job
        try:
            conn.send(("ok", getattr(engine, kind)(requests)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    close = getattr(engine, "close", None)
    if callable(close):
        close()


class ReplicaEngine:
    """Streaming engine over one worker process per replica (see module docstring)."""

    def __init__(self, spec: EngineSpec, role: str, build: EngineBuilder):
        self.backend = spec.backend
        self.batch_size = spec.batch_size
        self.role = role
        self.gpus = list(spec.replicas)
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA state
        self._conns: list[Connection] = []
        self._procs = []
        for gpus in self.gpus:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec, role, gpus, build), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        ids = [self._reply(k, _START_TIMEOUT_S, "start") for k in range(len(self.gpus))]
        if len(set(ids)) != 1:
            self.close()
            raise EngineError(f"engines.{role}.replicas load different models: {ids}")
        self.model_id = ids[0]  # the single engine's identity: cache entries are shared

    def _reply(self, k: int, timeout: float | None, what: str) -> Any:
        conn = self._conns[k]
        if timeout is not None and not conn.poll(timeout):
            self.close()
            raise EngineError(f"engines.{self.role} replica {k}: no answer to {what}")
        try:
            status, value = conn.recv()
        except EOFError:
            self.close()
            raise EngineError(
                f"engines.{self.role} replica {k} (GPUs {self.gpus[k]}) died during {what}"
            ) from None
        if status == "error":
            self.close()
            raise EngineError(f"engines.{self.role} replica {k} (GPUs {self.gpus[k]}): {value}")
        return value

    def stream(self, kind: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Split ``requests`` evenly over the replicas; yield each block's results (with
        their request indices) as that replica finishes."""
        if not self._conns:
            raise EngineError(f"engines.{self.role}: replicas are closed")
        blocks = {}
        for k, block in enumerate(split_even(len(requests), len(self._conns))):
            if len(block):
                self._conns[k].send((kind, [requests[i] for i in block]))
                blocks[k] = block
        while blocks:
            ready = wait([self._conns[k] for k in blocks])
            for k in [k for k in blocks if self._conns[k] in ready]:
                results = self._reply(k, None, kind)
                block = blocks.pop(k)
                if len(results) != len(block):
                    raise EngineError(
                        f"engines.{self.role} replica {k}: {len(results)} results for "
                        f"{len(block)} requests"
                    )
                yield from zip(block, results, strict=True)

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        return collect(self.stream("generate", requests), len(requests))

    def score(self, requests: Sequence[Any]) -> list[Any]:
        return collect(self.stream("score", requests), len(requests))

    def choose(self, requests: Sequence[Any]) -> list[Any]:
        return collect(self.stream("choose", requests), len(requests))

    def close(self) -> None:
        """Stop every replica (each closes its engine first)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []
