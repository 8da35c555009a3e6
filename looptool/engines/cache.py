"""Content-addressed request cache (SQLite, WAL) and the engine wrapper that uses it.

Key = sha256 of the canonical JSON of (key version, backend, model identity, request kind,
every request field incl. task/payload and sampling params). The cache lives outside DVC
outputs (default ``<repo>/.cache/looptool/requests.sqlite``, env ``LOOPTOOL_CACHE_DIR``
wins) so `dvc repro` never tracks it.

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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
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

# Bump when a backend's output semantics change, so stale entries stop matching.
# 2: openai replies normalised like hf's (stop strings cut, reasoning as a think block),
#    per-request capability identity, choose scored with the end-of-turn token.
KEY_VERSION = 2
CACHE_FILE = "requests.sqlite"
_LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...), below SQLite's variable limit
# Streaming backends: commit after this many finished results or this many seconds: the
# window bounds the finished work a kill can lose, and one small WAL transaction per
# window keeps the cache off the critical path.
FLUSH_EVERY = 32
FLUSH_SECONDS = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    model_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID
"""


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """Nearest ancestor holding dvc.yaml, .dvc or .git; the start dir if there is none."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").exists() or (d / ".dvc").is_dir() or (d / ".git").exists():
            return d
    return here


def default_cache_dir(cache_dir: str | os.PathLike | None = None, root: str | None = None) -> Path:
    """Resolve the cache directory: env LOOPTOOL_CACHE_DIR, else ``cache_dir`` (params),
    else ``.cache/looptool``; relative paths are taken under the repo root."""
    chosen = os.environ.get("LOOPTOOL_CACHE_DIR") or cache_dir or ".cache/looptool"
    p = Path(chosen).expanduser()
    return p if p.is_absolute() else find_repo_root(root) / p


class RequestCache:
    """Persistent key -> JSON response table. Safe for one writer plus readers; one
    connection, used by one thread at a time (a lock: the timed flush runs on its own)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process kill (not a power loss).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise EngineError(
                f"request cache {self.path}: cannot open ({exc}); "
                "remove it with `looptool cache clear` or delete the file"
            ) from None

    @classmethod
    def open(cls, cache_dir: str | os.PathLike | None = None) -> RequestCache:
        """Open ``<cache_dir>/requests.sqlite`` (see :func:`default_cache_dir`)."""
        return cls(default_cache_dir(cache_dir) / CACHE_FILE)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def make_key(backend: str, model_id: str, kind: str, request: dict[str, Any] | str) -> str:
        """sha256 over (key version, backend, model, kind, canonical request JSON)."""
        req = request if isinstance(request, str) else canonical_json(request)
        blob = f"{KEY_VERSION}\0{backend}\0{model_id}\0{kind}\0{req}"
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Decoded responses for the keys present."""
        out: dict[str, Any] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), _LOOKUP_CHUNK):
            chunk = uniq[i : i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT key, response FROM requests WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, response in rows:
                out[key] = json.loads(response)
        return out

    def put_many(self, rows: Sequence[tuple[str, str, str, str, Any]]) -> None:
        """Insert (key, kind, backend, model_id, response) rows in one committed transaction."""
        now = time.time()
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (k, kind, b, m, json.dumps(v, ensure_ascii=False), now)
                    for k, kind, b, m, v in rows
                ],
            )

    def info(self) -> dict[str, Any]:
        """Size on disk and row counts per (backend, model_id, kind)."""
        n = self._conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        groups = self._conn.execute(
            "SELECT backend, model_id, kind, count(*), sum(length(response)) FROM requests "
            "GROUP BY backend, model_id, kind ORDER BY backend, model_id, kind"
        ).fetchall()
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            "entries": int(n),
            "bytes_on_disk": int(size),
            "groups": [
                {
                    "backend": b,
                    "model_id": m,
                    "kind": k,
                    "entries": int(c),
                    "response_bytes": int(s or 0),
                }
                for b, m, k, c, s in groups
            ],
        }

    def clear(self, backend: str | None = None, model_id: str | None = None) -> int:
        """Delete entries (all, or those of one backend / model); return how many."""
        where, args = [], []
        if backend:
            where.append("backend = ?")
            args.append(backend)
        if model_id:
            where.append("model_id = ?")
            args.append(model_id)
        sql = "DELETE FROM requests" + (" WHERE " + " AND ".join(where) if where else "")
        with self._conn:
            n = self._conn.execute(sql, args).rowcount
        self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n)


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
    ):
        self.inner = engine
        self.cache = cache
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
        }

    def stats(self) -> dict[str, int]:
        """Counters since construction / reset: hits, misses, requests sent, and backend
        batches (for a streaming backend: cache commits)."""
        return dict(self._stats)

    @property
    def streaming(self) -> bool:
        """Whether the backend takes a whole stage at once (has ``stream``)."""
        return isinstance(self.inner, StreamingEngine)

    def _run(
        self,
        kind: str,
        requests: Sequence[Any],
        call: Callable[[list[Any]], list[Any]],
        encode: Callable[[Any], Any],
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
        order = sorted(pending, key=lambda k: len(blobs[pending[k][0]]))
        if not order:
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
                    self.cache.put_many(buffer)
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
                    enc = encode(out)
                    for i in pending[key]:
                        # decode(encode(.)) gives every caller its own copy, as a hit would
                        results[i] = decode(encode(out))
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
            lambda gens: [asdict(g) for g in gens],
            _decode_generations,
        )

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        return self._run("score", requests, self.inner.score, asdict, _decode_score)

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        return self._run("choose", requests, self.inner.choose, lambda s: s, lambda s: s)


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
    }
