"""Where a command a user types may write: never over the pipeline's files.

`looptool sql --csv/--parquet` and `looptool export --out` write one file. It must not be
a file DVC tracks (any stage's output or dependency, resolved by DVC itself), a params
file (``params*.yaml``), a DVC file (``dvc.*``, ``*.dvc``) or anything under ``.dvc/`` or
``.git/``; an existing file is replaced only with ``--force``; a missing parent folder is
an error, not created silently.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path a command refuses to write; the message says why."""


_PROTECTED_NAMES = ("params*.yaml", "params*.yml", "dvc.yaml", "dvc.lock", "*.dvc")
_PROTECTED_DIRS = (".dvc", ".git")


def _dvc_paths(start: Path) -> tuple[Path | None, list[Path], str | None]:
    """(DVC repo root, every stage out and dep path, why they could not be read) for the
    repository enclosing ``start``; (None, [], None) outside any DVC repository."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(start))
    except NotDvcRepoError:
        return None, [], None
    try:
        with repo:
            index = repo.index
            paths = [Path(o.fs_path) for o in index.outs]
            paths += [Path(d.fs_path) for d in index.deps]
            return Path(repo.root_dir), paths, None
    except Exception as exc:  # a dvc.yaml / params.yaml DVC cannot resolve right now
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Path(repo.root_dir), [], first


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def check_output_path(
    path: str | os.PathLike, force: bool = False, inputs: tuple[Path, ...] = ()
) -> Path:
    """Return ``path`` if a command may write it; raise OutputPathError saying why not.

    ``inputs`` are files the command reads (writing over one is refused even with force).
    """
    out = Path(path)
    target = Path(os.path.abspath(out))
    name = target.name
    if any(fnmatch.fnmatch(name, pat) for pat in _PROTECTED_NAMES):
        raise OutputPathError(f"{out}: refusing to write a params or DVC file; choose another path")
    hidden = next((d for d in _PROTECTED_DIRS if d in target.parts), None)
    if hidden:
        raise OutputPathError(f"{out}: refusing to write inside {hidden}/; choose another path")
    if target.is_dir():
        raise OutputPathError(f"{out}: is a directory; give a file path")
    if not target.parent.is_dir():
        raise OutputPathError(
            f"{out}: folder {target.parent} does not exist; create it first (mkdir -p)"
        )
    resolved = target.resolve()
    for src in inputs:
        if Path(src).resolve() == resolved:
            raise OutputPathError(f"{out}: is this command's own input; choose another path")
    repo_root, tracked, why = _dvc_paths(target.parent)
    for p in tracked:
        if _inside(resolved, p.resolve()):
            raise OutputPathError(
                f"{out}: DVC tracks {p} (a pipeline stage's output or dependency); "
                "write elsewhere, e.g. outside data/"
            )
    if why is not None and _inside(resolved, repo_root.resolve() / "data"):
        raise OutputPathError(
            f"{out}: refusing to write under data/ while DVC cannot list what it tracks ({why})"
        )
    if target.exists() and not force:
        raise OutputPathError(f"{out}: already exists; pass --force to replace it")
    return out
