"""The request cache's store: one SQLite file (WAL) mapping a request key to its JSON
response, with who stored each entry and when it was last used.

Key = sha256 of the canonical JSON of (key version, backend, model identity, request kind,
every request field incl. task/payload and sampling params). The cache lives outside DVC
outputs (default ``<repo>/.cache/looptool/requests.sqlite``, env ``LOOPTOOL_CACHE_DIR``
wins) so `dvc repro` never tracks it.

Every entry records the role and the DVC stage (env ``DVC_STAGE``) that stored it and when
it was last answered from; every engine instance records its hits, misses and bytes in
``runs``. ``looptool cache stats`` reports them, ``looptool cache prune`` trims the table
(:meth:`RequestCache.prune`). The engine wrapper that reads and fills it:
:mod:`looptool.engines.cache`.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looptool.core.types import canonical_json
from looptool.engines.base import EngineError
from looptool.engines.checkpoint import model_fingerprint

# Bump when a backend's output semantics change, so stale entries stop matching.
# 2: openai replies normalised like hf's (stop strings cut, reasoning as a think block),
#    per-request capability identity, choose scored with the end-of-turn token.
KEY_VERSION = 2
CACHE_FILE = "requests.sqlite"
_LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...), below SQLite's variable limit

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
# Added by #29, beside `requests` (whose columns stay as they were, so a process running
# older code keeps writing to the same file): the role and stage that stored an entry and
# when it was last answered from (LRU). Entries without a row here show role/stage NULL.
_META = """
CREATE TABLE IF NOT EXISTS entry_meta (
    key TEXT PRIMARY KEY,
    role TEXT,
    stage TEXT,
    used REAL
) WITHOUT ROWID
"""
_JOINED = "requests LEFT JOIN entry_meta USING (key)"
_RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    session TEXT PRIMARY KEY,
    stage TEXT,
    role TEXT,
    backend TEXT NOT NULL,
    model_id TEXT NOT NULL,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    hits INTEGER NOT NULL,
    misses INTEGER NOT NULL,
    bytes_written INTEGER NOT NULL
)
"""
# bytes an entry takes: its key plus its response (UTF-8), as SQLite stores them
_ENTRY_BYTES = "(length(key) + length(CAST(response AS BLOB)))"
# a local checkpoint's identity: "<path>@<16 hex fingerprint>[+tok@...]:<dtype>"
_LOCAL_MODEL_ID = re.compile(r"^(?P<path>.+?)@(?P<fp>[0-9a-f]{16})(?:\+tok@[0-9a-f]{16})?:[^:@]+$")


def parse_size(text: str) -> int:
    """``500MB``, ``2GB``, ``1.5GiB``, ``4096`` -> bytes; ValueError naming the text."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r}: not a size (e.g. 500MB, 2GB, 4096)")
    unit = m.group(2).lower().rstrip("b")
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
    return int(float(m.group(1)) * base**power)


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w`` -> seconds; ValueError naming the text."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r}: not an age (a number and s, m, h, d or w, e.g. 30d)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2).lower()]
    return float(m.group(1)) * unit


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
            self._conn.execute(_META)
            self._conn.execute(_RUNS)
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

    def put_many(
        self,
        rows: Sequence[tuple[str, str, str, str, Any]],
        role: str | None = None,
        stage: str | None = None,
    ) -> int:
        """Insert (key, kind, backend, model_id, response) rows in one committed
        transaction, tagged with ``role`` and ``stage``; return the bytes stored."""
        now = time.time()
        encoded = [
            (k, kind, b, m, json.dumps(v, ensure_ascii=False), now) for k, kind, b, m, v in rows
        ]
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?)", encoded
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO entry_meta VALUES (?, ?, ?, ?)",
                [(e[0], role, stage, now) for e in encoded],
            )
        return sum(len(e[0]) + len(e[4].encode("utf-8")) for e in encoded)

    def touch(self, keys: Sequence[str]) -> None:
        """Mark entries as used now (answered from the cache): what --max-bytes keeps."""
        uniq = list(dict.fromkeys(keys))
        now = time.time()
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO entry_meta (key, used) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET used = excluded.used",
                [(k, now) for k in uniq],
            )

    def record_run(
        self, session: str, stage: str | None, role: str | None, backend: str,
        model_id: str, started: float, stats: dict[str, int],
    ) -> None:  # fmt: skip
        """Upsert one engine instance's counters (``runs``; `cache stats` shows the last)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session) "
                "DO UPDATE SET updated = excluded.updated, hits = excluded.hits, "
                "misses = excluded.misses, bytes_written = excluded.bytes_written",
                (session, stage, role, backend, model_id, started, time.time(),
                 stats["cache_hits"], stats["cache_misses"], stats["cache_bytes_written"]),
            )  # fmt: skip

    def bytes_on_disk(self) -> int:
        """Size of the database with its WAL and shared-memory files."""
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )

    def info(self) -> dict[str, Any]:
        """Size on disk and row counts per (backend, model_id, kind)."""
        n = self._conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        groups = self._conn.execute(
            "SELECT backend, model_id, kind, count(*), sum(length(response)) FROM requests "
            "GROUP BY backend, model_id, kind ORDER BY backend, model_id, kind"
        ).fetchall()
        size = self.bytes_on_disk()
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
        self._compact()
        return int(n)

    def _compact(self) -> None:
        with self._conn:  # rows of entries gone (also ones deleted by older code)
            self._conn.execute("DELETE FROM entry_meta WHERE key NOT IN (SELECT key FROM requests)")
        self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def stats(self) -> dict[str, Any]:
        """Entries and bytes per role, model identity and stage, and each stage's last run
        (per stage and role: the newest engine session, its hits, misses and hit rate)."""

        def groups(col: str) -> list[dict[str, Any]]:
            rows = self._conn.execute(
                f"SELECT {col}, count(*), sum({_ENTRY_BYTES}) FROM {_JOINED} "
                f"GROUP BY {col} ORDER BY sum({_ENTRY_BYTES}) DESC, {col}"
            ).fetchall()
            return [{col: v, "entries": int(n), "bytes": int(b or 0)} for v, n, b in rows]

        n, total = self._conn.execute(
            f"SELECT count(*), coalesce(sum({_ENTRY_BYTES}), 0) FROM requests"
        ).fetchone()
        last = self._conn.execute(
            "SELECT stage, role, backend, model_id, started, updated, hits, misses, "
            "bytes_written FROM runs r WHERE updated = (SELECT max(updated) FROM runs q "
            "WHERE q.stage IS r.stage AND q.role IS r.role) ORDER BY updated DESC"
        ).fetchall()
        runs = [
            {
                "stage": st, "role": ro, "backend": b, "model_id": m, "started": t0,
                "updated": t1, "hits": int(h), "misses": int(mi),
                "hit_rate": (h / (h + mi)) if h + mi else None, "bytes_written": int(w),
            }
            for st, ro, b, m, t0, t1, h, mi, w in last
        ]  # fmt: skip
        hits = sum(r["hits"] for r in runs)
        asked = hits + sum(r["misses"] for r in runs)
        return {
            "path": str(self.path),
            "entries": int(n),
            "bytes": int(total),
            "bytes_on_disk": self.bytes_on_disk(),
            "by_role": groups("role"),
            "by_model": groups("model_id"),
            "by_stage": groups("stage"),
            "last_runs": runs,
            "last_run_hit_rate": hits / asked if asked else None,
        }

    def prune(
        self,
        keep_fingerprints_of: Sequence[str] = (),
        older_than: float | None = None,
        max_bytes: int | None = None,
        root: str | os.PathLike | None = None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Delete entries; return what was kept and deleted (and why).

        - ``keep_fingerprints_of``: checkpoint path patterns (``data/iter_*/model``). An
          entry of a local checkpoint whose path matches a pattern is kept only when its
          fingerprint is that of a checkpoint matching the pattern now; entries of other
          models (a judge, an endpoint) are not touched by this rule.
        - ``older_than``: seconds; entries last used (or stored) longer ago go.
        - ``max_bytes``: then the least recently used entries go until the rest fit.
        """
        base = find_repo_root(root)
        now = time.time() if now is None else now
        doomed: dict[str, str] = {}  # key -> reason
        kept_fps: dict[str, list[str]] = {}
        if keep_fingerprints_of:
            fps_of: dict[str, set[str]] = {}
            for pattern in keep_fingerprints_of:
                pat = str(pattern)
                full = pat if os.path.isabs(pat) else str(base / pat)
                dirs = sorted(d for d in glob.glob(full) if Path(d, "config.json").is_file())
                fps_of[pat] = {model_fingerprint(d) for d in dirs}
                kept_fps[pat] = sorted(fps_of[pat])
            for key, model_id in self._conn.execute("SELECT key, model_id FROM requests"):
                m = _LOCAL_MODEL_ID.match(model_id)
                if not m:
                    continue
                path = m.group("path")
                rel = os.path.relpath(path, base) if os.path.isabs(path) else path
                for pat, fps in fps_of.items():
                    rel_pat = os.path.relpath(pat, base) if os.path.isabs(pat) else pat
                    if fnmatch.fnmatch(os.path.normpath(rel), os.path.normpath(rel_pat)):
                        if m.group("fp") not in fps:
                            doomed[key] = "fingerprint"
                        break
        if older_than is not None:
            cutoff = now - older_than
            for (key,) in self._conn.execute(
                f"SELECT key FROM {_JOINED} WHERE coalesce(used, created) < ?", (cutoff,)
            ):
                doomed.setdefault(key, "older_than")
        if max_bytes is not None:
            used = 0
            rows = self._conn.execute(
                f"SELECT key, {_ENTRY_BYTES} FROM {_JOINED} "
                "ORDER BY coalesce(used, created) DESC, key"
            )
            for key, size in rows:
                if key in doomed:
                    continue
                if used + size <= max_bytes:
                    used += size
                else:
                    doomed[key] = "max_bytes"
        before = self.bytes_on_disk()
        n_all, b_all = self._conn.execute(
            f"SELECT count(*), coalesce(sum({_ENTRY_BYTES}), 0) FROM requests"
        ).fetchone()
        gone = list(doomed)
        b_gone = 0
        for i in range(0, len(gone), _LOOKUP_CHUNK):
            chunk = gone[i : i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            b_gone += self._conn.execute(
                f"SELECT coalesce(sum({_ENTRY_BYTES}), 0) FROM requests WHERE key IN ({marks})",
                chunk,
            ).fetchone()[0]
        if gone and not dry_run:
            with self._lock, self._conn:
                for i in range(0, len(gone), _LOOKUP_CHUNK):
                    chunk = gone[i : i + _LOOKUP_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    self._conn.execute(f"DELETE FROM requests WHERE key IN ({marks})", chunk)
            self._compact()
        reasons: dict[str, int] = {}
        for why in doomed.values():
            reasons[why] = reasons.get(why, 0) + 1
        return {
            "path": str(self.path),
            "dry_run": dry_run,
            "kept": int(n_all) - len(gone),
            "kept_bytes": int(b_all) - int(b_gone),
            "deleted": len(gone),
            "deleted_bytes": int(b_gone),
            "deleted_by": reasons,
            "kept_fingerprints": kept_fps,
            "bytes_on_disk_before": before,
            "bytes_on_disk_after": self.bytes_on_disk(),
        }
