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
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def check_output_dir(
    path: str | os.PathLike, force: bool = False, files: tuple[str, ...] = (),
    replace: bool = False,
) -> Path:  # fmt: skip
    """Return folder ``path`` if a command may write there; raise OutputPathError saying why.

    The same rules as :func:`check_output_path`, for a folder: never a protected name or
    inside ``.dvc/`` / ``.git/``, never holding or inside anything DVC tracks, a missing
    parent is an error. ``files``: names the command writes inside (an existing one needs
    ``force``); ``replace``: the command swaps in a whole new folder, so an existing
    non-empty one needs ``force`` (and :func:`guarded_dir` checks what it holds).
    """
    out = Path(path)
    target = Path(os.path.abspath(out))
    if any(fnmatch.fnmatch(target.name, pat) for pat in _PROTECTED_NAMES):
        raise OutputPathError(f"{out}: refusing to write a params or DVC file; choose another path")
    hidden = next((d for d in _PROTECTED_DIRS if d in target.parts), None)
    if hidden or (target.is_dir() and any((target / d).exists() for d in _PROTECTED_DIRS)):
        raise OutputPathError(f"{out}: refusing to write in or over a project's .dvc/ or .git/")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{out}: exists and is not a folder; give a folder path")
    if not target.parent.is_dir():
        raise OutputPathError(
            f"{out}: folder {target.parent} does not exist; create it first (mkdir -p)"
        )
    resolved = target.resolve()
    repo_root, tracked, why = _dvc_paths(target.parent)
    for p in tracked:
        pr = p.resolve()
        if _inside(resolved, pr) or _inside(pr, resolved):
            raise OutputPathError(
                f"{out}: DVC tracks {p} (a pipeline stage's output or dependency); "
                "write elsewhere, e.g. outside data/"
            )
    if repo_root is not None and _inside(repo_root.resolve(), resolved):
        raise OutputPathError(f"{out}: holds the DVC project {repo_root}; choose another folder")
    if why is not None and _inside(resolved, repo_root.resolve() / "data"):
        raise OutputPathError(
            f"{out}: refusing to write under data/ while DVC cannot list what it tracks ({why})"
        )
    if target.is_dir():
        for name in files:
            if (target / name).exists() and not force:
                raise OutputPathError(
                    f"{out}: {name} already exists there; pass --force to replace it"
                )
        if replace and any(target.iterdir()) and not force:
            raise OutputPathError(
                f"{out}: folder is not empty; pass --force to replace a folder this command wrote"
            )
    return out


@contextmanager
def guarded_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a path (not yet existing) to build a folder at; on success it replaces
    ``target`` (checked by :func:`check_output_dir`). An existing ``target`` is replaced
    only when it holds nothing but regular files whose names the new folder has too;
    anything else is refused and left untouched."""
    target = Path(target)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        built = stage / "new"
        yield built
        if not built.is_dir():
            raise OutputPathError(f"{target}: nothing was built")
        if target.exists() or target.is_symlink():
            if target.is_symlink() or not target.is_dir():
                raise OutputPathError(f"{target}: exists and is not a folder; left untouched")
            new = {p.name for p in built.iterdir()}
            stray = sorted(
                p.name for p in target.iterdir()
                if p.name not in new or p.is_symlink() or not p.is_file()
            )  # fmt: skip
            if stray:
                raise OutputPathError(
                    f"{target}: holds {', '.join(stray[:3])}{' ...' if len(stray) > 3 else ''}, "
                    "which this command does not write; left untouched (remove it yourself or "
                    "choose another folder)"
                )
            os.rename(target, stage / "old")
        os.rename(built, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
