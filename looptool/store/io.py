"""Atomic file writers and table readers.

Every output goes to a temp file in the target directory and is renamed into place,
so a killed stage never leaves a half-written file behind. Files and folders get the
permissions the user's umask gives (not the 0600 / 0700 of a private temp file).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask sets
    it, and for a moment another thread would create files with the wrong mask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_beside(target: Path, make) -> Path:
    """A new temp path beside ``target`` made by ``make(path)`` (which fails with
    FileExistsError when the name is taken); hidden and named after the target."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            make(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{target.parent}: no free temp name for {target.name}")


def _new_file(path: Path) -> None:
    # mode 0o666 less the umask, as open() creates files (tempfile.mkstemp makes 0600)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only on success.

    The temp file is created as ``open()`` would create ``path`` (the user's umask), so
    the file the rename puts in place has the permissions the user expects."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_beside(target, _new_file)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; it replaces ``path`` only on success.

    Created as ``mkdir`` would (mode 0o777 less the umask; tempfile.mkdtemp makes 0700)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target, lambda p: os.mkdir(p, 0o777))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in blocks)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(
        path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"
    )


def write_parquet_atomic(path: str | os.PathLike, table: pa.Table | Any) -> None:
    """Write a pyarrow Table (or a polars DataFrame) as parquet, atomically.

    Written without timestamps/creator metadata that change between runs, so reruns
    with the same inputs give byte-identical files.
    """
    if not isinstance(table, pa.Table):
        table = table.to_arrow()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", store_schema=True)


def read_parquet(path: str | os.PathLike) -> pa.Table:
    """Read a parquet table; a missing file raises FileNotFoundError naming it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"table not found: {p}")
    return pq.read_table(p)


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line_number, parsed_or_None, error_or_None) for each non-empty line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield lineno, None, f"{path}:{lineno}: invalid JSON: {exc.msg}"
