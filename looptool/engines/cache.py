"""The engine wrapper that answers from the request cache
(:mod:`looptool.engines.cache_store`) and sends only the misses to the backend.

One mechanism persists results for every backend: :class:`CachedEngine` consumes a stream
of ``(index, result)`` pairs and commits finished results every ``flush_every`` results
(a ``Failed`` one counts, though it is never stored) or ``flush_seconds`` seconds,
whichever comes first; the timed flush runs on its own clock, so results finished before
a stalled backend stops yielding still reach the disk. A backend with ``stream`` (see
:class:`~looptool.engines.base.StreamingEngine`) gets all of a stage's misses at once and
yields in completion order; any other backend is driven in ``batch_size`` chunks, each
committed when it returns. A stage killed with SIGKILL loses at most one flush window (or
the batch in flight), an exception keeps everything finished before it, and a rerun sends
only the requests that never finished.

A generation is stored without its token ids, and without its log-probs unless the
request asked for them (the probe's PPL reads them back); a score without its token ids:
no stage reads those back from the cache.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from looptool.core.types import canonical_json
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    Engine,
    EngineError,
    Failed,
    Generation,
    Score,
    ScoreRequest,
    StreamingEngine,
    request_to_json,
)
from looptool.engines.cache_store import RequestCache

# Streaming backends: commit after this many finished results or this many seconds: the
# window bounds the finished work a kill can lose, and one small WAL transaction per
# window keeps the cache off the critical path.
FLUSH_EVERY = 32
FLUSH_SECONDS = 5.0


def current_stage() -> str | None:
    """The DVC stage running this process (DVC sets ``DVC_STAGE``), None outside DVC."""
    return os.environ.get("DVC_STAGE") or None


def _encode_generations(gens: list[Generation], request: ChatRequest) -> list[dict]:
    """Stored: text and finish reason; log-probs only when the request asked for them (the
    probe's PPL). Token ids are never read back, so never stored."""
    keep = ("text", "finish_reason", *(("logprobs",) if request.params.logprobs else ()))
    return [{k: v for k, v in asdict(g).items() if k in keep} for g in gens]


def _encode_score(score: Score, request: ScoreRequest) -> dict:
    """Stored: the token log-probs (PPL, choice scores); token ids are never read back."""
    return {"token_logprobs": list(score.token_logprobs)}


def _decode_generations(value: list[dict]) -> list[Generation]:
    return [Generation(**g) for g in value]


def _decode_score(value: dict) -> Score:
    return Score(**value)


def batched_stream(
    call: Callable[[list[Any]], list[Any]], requests: Sequence[Any], batch_size: int, label: str
) -> Iterator[tuple[int, Any]]:
    """Drive a batch-only backend as a stream: ``batch_size`` requests per ``call``, each
    result yielded with its index once its batch returns."""
    for start in range(0, len(requests), batch_size):
        batch = list(requests[start : start + batch_size])
        outs = call(batch)
        if len(outs) != len(batch):
            raise EngineError(
                f"{label}: backend returned {len(outs)} results for {len(batch)} requests"
            )
        for offset, out in enumerate(outs):
            yield start + offset, out


class CachedEngine:
    """Engine wrapper: answers from the cache, sends only misses to the backend.

    Misses are deduplicated and ordered by request size (less padding per batch). A
    streaming backend gets them all at once; any other gets ``batch_size`` chunks. Finished
    results are committed every ``flush_every`` results / ``flush_seconds`` seconds (batch
    backends: after every batch), and on the way out of an error.
    """

    def __init__(
        self,
        engine: Engine,
        cache: RequestCache,
        progress: bool = True,
        flush_every: int = FLUSH_EVERY,
        flush_seconds: float = FLUSH_SECONDS,
        role: str | None = None,
    ):
        self.inner = engine
        self.cache = cache
        self.role = role
        self.stage = current_stage()
        self._session = uuid.uuid4().hex
        self._started = time.time()
        self.backend = engine.backend
        self.model_id = engine.model_id
        self.batch_size = engine.batch_size
        self.progress = progress
        self.flush_every = max(1, int(flush_every))
        self.flush_seconds = float(flush_seconds)
        self.reset_stats()

    def __getattr__(self, name: str) -> Any:
        # Backend extras (e.g. the hf tokenizer) stay reachable through the wrapper.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def reset_stats(self) -> None:
        self._stats = {
            "cache_hits": 0,
            "cache_misses": 0,
            "backend_requests": 0,
            "backend_batches": 0,
            "failed": 0,
            "cache_bytes_written": 0,
        }

    def stats(self) -> dict[str, int]:
        """Counters since construction / reset: hits, misses, requests sent, backend
        batches (for a streaming backend: cache commits), bytes this engine stored, and
        the cache's size on disk now."""
        return {**self._stats, "cache_bytes": self.cache.bytes_on_disk()}

    def _record_run(self) -> None:
        self.cache.record_run(
            self._session, self.stage, self.role, self.backend, self.model_id,
            self._started, self._stats,
        )  # fmt: skip

    @property
    def streaming(self) -> bool:
        """Whether the backend takes a whole stage at once (has ``stream``)."""
        return isinstance(self.inner, StreamingEngine)

    def _run(
        self,
        kind: str,
        requests: Sequence[Any],
        call: Callable[[list[Any]], list[Any]],
        encode: Callable[[Any, Any], Any],
        decode: Callable[[Any], Any],
    ) -> list[Any]:
        blobs = [canonical_json(request_to_json(r)) for r in requests]
        # a backend whose answers depend on more than its model (an endpoint's probed
        # capabilities) names the identity per request
        identities = getattr(self.inner, "cache_identities", None)
        idents = identities(kind, requests) if callable(identities) else None
        keys = [
            self.cache.make_key(self.backend, idents[i] if idents else self.model_id, kind, b)
            for i, b in enumerate(blobs)
        ]
        found = self.cache.get_many(keys)
        results: list[Any] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in found:
                results[i] = decode(found[key])
            else:
                pending.setdefault(key, []).append(i)
        n_hits = len(requests) - sum(len(v) for v in pending.values())
        self._stats["cache_hits"] += n_hits
        self._stats["cache_misses"] += len(requests) - n_hits
        if found:
            self.cache.touch(list(found))
        order = sorted(pending, key=lambda k: len(blobs[pending[k][0]]))
        if not order:
            self._record_run()
            return results
        misses = [requests[pending[k][0]] for k in order]
        label = f"{self.backend} {kind}"
        if self.streaming:
            stream = self.inner.stream(kind, misses)
            flush_every, flush_seconds = self.flush_every, self.flush_seconds
        else:
            stream = batched_stream(call, misses, self.batch_size, label)
            # exactly one commit per batch, as it returns: a timed flush would split a slow
            # batch and leave its tail uncommitted while the next batch runs
            flush_every, flush_seconds = self.batch_size, math.inf
        bar = tqdm(
            total=len(order),
            desc=label,
            unit="req",
            disable=not self.progress or len(order) <= self.batch_size,
        )
        buffer: list[tuple[str, str, str, str, Any]] = []
        done: set[int] = set()
        window = {"results": 0, "start": time.monotonic()}  # results since the last flush
        lock = threading.Lock()  # buffer + window, shared with the timer below

        def flush() -> None:
            with lock:
                if buffer:
                    self._stats["cache_bytes_written"] += self.cache.put_many(
                        buffer, role=self.role, stage=self.stage
                    )
                    self._stats["backend_batches"] += 1
                    buffer.clear()
                window.update(results=0, start=time.monotonic())

        # A streaming backend can stall (a slow request, a dead server it retries): the
        # timed flush runs on its own clock so what is buffered reaches the disk within one
        # window even when no new result arrives.
        stop = threading.Event()
        timer = None
        if math.isfinite(flush_seconds):
            tick = max(0.01, flush_seconds / 4)

            def timed_flush() -> None:
                while not stop.wait(tick):
                    if time.monotonic() - window["start"] >= flush_seconds:
                        flush()

            timer = threading.Thread(target=timed_flush, name="cache-flush", daemon=True)
            timer.start()
        try:
            for idx, out in stream:
                if not 0 <= idx < len(order) or idx in done:
                    raise EngineError(
                        f"{label}: backend returned result #{idx} twice or out of range"
                    )
                done.add(idx)
                key = order[idx]
                self._stats["backend_requests"] += 1
                bar.update(1)
                if isinstance(out, Failed):
                    # never cached: a rerun asks again (the cause may be transient or fixed)
                    self._stats["failed"] += 1
                    for i in pending[key]:
                        results[i] = out
                else:
                    enc = encode(out, misses[idx])
                    for i in pending[key]:
                        # decode(encode(.)) gives every caller its own copy, as a hit would
                        results[i] = decode(encode(out, misses[idx]))
                    with lock:
                        buffer.append((key, kind, self.backend, self.model_id, enc))
                # a Failed counts towards the window too: a batch backend's window is its
                # batch, so every batch is committed as it returns, failures or not
                with lock:
                    window["results"] += 1
                    due = window["results"] >= flush_every
                    due = due or time.monotonic() - window["start"] >= flush_seconds
                if due:
                    flush()
        finally:
            stop.set()
            if timer is not None:
                timer.join()
            # Keep what finished, also when the backend failed half way.
            flush()
            self._record_run()
            bar.close()
        if len(done) != len(order):
            raise EngineError(
                f"{label}: backend returned {len(done)} results for {len(order)} requests"
            )
        return results

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        return self._run(
            "generate",
            requests,
            self.inner.generate,
            _encode_generations,
            _decode_generations,
        )

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        return self._run("score", requests, self.inner.score, _encode_score, _decode_score)

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        return self._run("choose", requests, self.inner.choose, lambda s, _: s, lambda s: s)


def cache_stats(engine: object) -> dict[str, int]:
    """Cache counters for stage metrics; zeros for an engine without the cache (e.g. the
    template backend, which is never cached)."""
    if isinstance(engine, CachedEngine):
        return engine.stats()
    return {
        "cache_hits": 0,
        "cache_misses": 0,
        "backend_requests": 0,
        "backend_batches": 0,
        "failed": 0,
        "cache_bytes_written": 0,
        "cache_bytes": 0,
    }
