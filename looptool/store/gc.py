"""`looptool gc --keep-last N`: drop older iterations' checkpoints from the workspace and
the DVC cache, keep their hashes.

`dvc gc` keeps everything the workspace's dvc.lock names, so it never drops a checkpoint
of the current pipeline, and it has no keep-last-N. This removes the checkpoints
(``data/iter_*/model`` outputs, the newest N iterations kept) from the workspace and their
objects from the local DVC cache, except objects a kept output also uses (a tokenizer
file identical in every checkpoint stays). dvc.lock, every table and the lineage are not
touched, so each iteration's checkpoint hash stays on record: ``dvc repro`` rebuilds a
dropped checkpoint (``dvc repro --allow-missing`` goes on without it) and ``dvc pull``
restores one pushed to a remote before.

Refused while a DVC command runs in the repository; the repository lock is held while
deleting, so no repro starts half way.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATTERN = "data/iter_*/model"


class GcError(RuntimeError):
    """Why gc cannot run (the message is one line a user can act on)."""


@dataclass
class Checkpoint:
    j: int
    path: str  # relative to the repo root, as in dvc.yaml
    stage: str
    hash: str  # md5 in dvc.lock (``<md5>.dir`` for a directory)
    in_workspace: bool


@dataclass
class GcPlan:
    root: Path
    keep: list[Checkpoint]
    drop: list[Checkpoint]
    objects: list[str] = field(default_factory=list)  # cache files to delete
    shared: int = 0  # objects of dropped checkpoints a kept output still uses
    freed_bytes: int = 0  # blocks on disk released (workspace + cache, links counted once)
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        def ck(c: Checkpoint) -> dict[str, Any]:
            return {"iter": c.j, "path": c.path, "stage": c.stage, "hash": c.hash}

        return {
            "root": str(self.root),
            "keep": [ck(c) for c in self.keep],
            "drop": [ck(c) for c in self.drop],
            "cache_objects_deleted": len(self.objects),
            "cache_objects_shared": self.shared,
            "freed_bytes": self.freed_bytes,
            "dry_run": not self.done,
        }


def _iteration(path: str) -> int | None:
    m = re.search(r"iter_(\d+)", path)
    return int(m.group(1)) if m else None


def _oids(odb: Any, hash_value: str) -> set[str]:
    """The cache objects behind one output hash: the file, or the .dir and its files."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    oids = {hash_value}
    if hash_value.endswith(".dir"):
        try:
            tree = Tree.load(odb, HashInfo("md5", hash_value))
        except Exception:  # .dir object not in the cache (never built here, or dropped)
            return oids
        oids |= {hi.value for _, _, hi in tree if hi is not None and hi.value}
    return oids


def _blocks(paths: list[Path]) -> int:
    """Bytes released by deleting ``paths``: an inode counts once, and only when every
    link to it is among them (a hardlink kept elsewhere keeps its blocks)."""
    seen: dict[tuple[int, int], list[int]] = {}
    for p in paths:
        try:
            st = os.lstat(p)
        except OSError:
            continue
        entry = seen.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_blocks * 512])
        entry[0] += 1
    return sum(size for n, links, size in seen.values() if n >= links)


def _workspace_files(path: Path) -> list[Path]:
    if not path.exists() and not path.is_symlink():
        return []
    if path.is_file() or path.is_symlink():
        return [path]
    return [Path(d, f) for d, _, files in os.walk(path) for f in files]


def plan_gc(root: str | os.PathLike, keep_last: int, pattern: str = DEFAULT_PATTERN) -> GcPlan:
    """Which checkpoints go and which cache objects with them (nothing is deleted)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    from looptool.store.dvc_lock import running_dvc_pid

    if keep_last < 1:
        raise GcError(f"--keep-last {keep_last}: keep at least the newest checkpoint (1)")
    base = Path(root).resolve()
    try:
        repo = Repo(str(base))
    except NotDvcRepoError:
        raise GcError(f"{base}: not a DVC repository (no .dvc/)") from None
    with repo:
        if (pid := running_dvc_pid(repo.root_dir)) is not None:
            who = f"PID {pid}" if pid > 0 else "PID unknown"
            raise GcError(f"a repro is running: {who}; run gc when it ends")
        try:
            outs = list(repo.index.outs)
        except Exception as exc:  # dvc.yaml / params.yaml DVC cannot resolve
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GcError(f"dvc cannot read the pipeline: {first}") from None
        odb = repo.cache.local
        rel = lambda o: os.path.relpath(o.fs_path, repo.root_dir)  # noqa: E731
        found: list[tuple[Checkpoint, Any]] = []
        for o in outs:
            path = rel(o)
            j = _iteration(path)
            if not fnmatch.fnmatch(path, pattern) or j is None or not o.use_cache:
                continue
            if not (o.hash_info and o.hash_info.value):
                continue  # declared, never built: nothing to drop
            in_ws = os.path.lexists(o.fs_path)
            found.append((Checkpoint(j, path, o.stage.name, o.hash_info.value, in_ws), o))
        found.sort(key=lambda t: t[0].j)
        keep = [c for c, _ in found[-keep_last:]]
        drop_pairs = found[:-keep_last] if len(found) > keep_last else []
        plan = GcPlan(Path(repo.root_dir), keep, [c for c, _ in drop_pairs])
        if not drop_pairs:
            return plan
        for c, o in drop_pairs:
            if c.in_workspace and o.status():  # compares with dvc.lock (DVC's state db)
                raise GcError(
                    f"{c.path}: differs from its hash in dvc.lock (not committed); "
                    f"`dvc commit {c.stage}` or `dvc checkout {c.path}` first"
                )
        dropped_ids = {id(o) for _, o in drop_pairs}
        protected: set[str] = set()
        for o in outs:
            if id(o) not in dropped_ids and o.use_cache and o.hash_info and o.hash_info.value:
                protected |= _oids(odb, o.hash_info.value)
        doomed: set[str] = set()
        for c, _ in drop_pairs:
            doomed |= _oids(odb, c.hash)
        plan.shared = len(doomed & protected)
        plan.objects = sorted(
            p for oid in doomed - protected if os.path.lexists(p := odb.oid_to_path(oid))
        )
        files = [Path(p) for p in plan.objects]
        for c in plan.drop:
            files += _workspace_files(plan.root / c.path)
        plan.freed_bytes = _blocks(files)
        return plan


def run_gc(plan: GcPlan) -> GcPlan:
    """Delete what ``plan`` names, holding the repository lock."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    if not plan.drop:
        plan.done = True
        return plan
    repo = Repo(str(plan.root))
    try:
        with repo, repo.lock:
            for c in plan.drop:
                p = plan.root / c.path
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif os.path.lexists(p):
                    p.unlink()
            for obj in plan.objects:
                Path(obj).unlink(missing_ok=True)
    except LockError:
        raise GcError("a DVC command holds the repository lock; run gc when it ends") from None
    plan.done = True
    return plan


def format_plan(plan: GcPlan) -> str:
    if not plan.keep and not plan.drop:
        return f"no built checkpoints matching the pattern in {plan.root}"
    lines = ["keeping " + ", ".join(c.path for c in plan.keep)]
    if not plan.drop:
        lines.append("nothing to drop")
        return "\n".join(lines)
    verb = "dropped" if plan.done else "would drop"
    lines.append(f"{verb} " + ", ".join(f"{c.path} ({c.stage})" for c in plan.drop))
    lines.append(
        f"{'deleted' if plan.done else 'would delete'} {len(plan.objects)} cache objects "
        f"({plan.shared} shared with kept outputs stay); "
        f"{'freed' if plan.done else 'would free'} {plan.freed_bytes / 1e9:,.3f} GB"
    )
    lines.append(
        "dvc.lock keeps their hashes: `dvc repro --allow-missing` goes on without them, "
        "`dvc repro <stage>` rebuilds one, `dvc pull <path>` restores a pushed copy"
    )
    return "\n".join(lines)
