"""Where a command a user types may write: never over the pipeline's files.

Every command that writes a path the user names (``sql --csv/--parquet``, ``export``,
``report``, ``eval bfcl``, ``eval bfcl-run``, ``build-tiny-model``, ``import-model``,
``compare``) declares that option with :class:`OutputFile` or :class:`OutputDir`, which run
this module's checks while the command line is parsed, before anything runs:

- the path is resolved first (symlinks, ``..``), and every check applies to both the path
  as typed and the real path it names;
- never a params file (``params*.yaml``), a DVC file (``dvc.*``, ``*.dvc``), anything under
  ``.dvc/`` or ``.git/``, a file DVC tracks (any stage's output or dependency, as DVC itself
  resolves them) or a file Git tracks; a folder output never contains one of those;
- when DVC cannot read ``dvc.yaml`` / ``dvc.lock`` it cannot say what it tracks: then
  nothing inside the DVC project is written (rather than guessing);
- an existing target must be a regular file (a folder for folder outputs): a device, pipe
  or socket is never replaced; an existing file is replaced only with ``--force``;
- a missing parent folder is an error, never created;
- a folder output replaces an existing non-empty folder only with ``--force`` and only when
  that folder holds nothing but files the command writes again (:func:`guarded_dir`).

Files are written to a temp file beside the target and renamed into place with the
permissions the user's umask gives (looptool.store.io.atomic_path).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from looptool.core.terminal import first_line
from looptool.store.io import umask


class OutputPathError(ValueError):
    """An output path a command refuses to write; the message says why."""


_PROTECTED_NAMES = ("params*.yaml", "params*.yml", "dvc.yaml", "dvc.lock", "*.dvc")
_PROTECTED_DIRS = (".dvc", ".git")


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with every symlink and ``..`` resolved (missing tails kept)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path if path.is_dir() else path.parent


def _dvc_paths(start: Path) -> tuple[Path | None, list[Path], str | None]:
    """(DVC repo root, every stage out and dep path, why they could not be read) for the
    repository enclosing ``start``; (None, [], None) outside any DVC repository."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(start))
    except NotDvcRepoError:
        return None, [], None
    except Exception as exc:  # a damaged .dvc/config: DVC cannot open the project at all
        root = _dvc_root_of(start)
        return root, [], first_line(exc)
    try:
        with repo:
            index = repo.index
            paths = [Path(o.fs_path) for o in index.outs]
            paths += [Path(d.fs_path) for d in index.deps]  # the index reads dvc.lock too
            return Path(repo.root_dir), paths, None
    except Exception as exc:  # a dvc.yaml / dvc.lock / params.yaml DVC cannot read right now
        return Path(repo.root_dir), [], first_line(exc)


def _dvc_root_of(start: Path) -> Path | None:
    for p in (start, *start.parents):
        if (p / ".dvc").is_dir():
            return p
    return None


def _git_tracks(path: Path) -> bool:
    """Whether Git tracks ``path`` (False outside a Git work tree or without git)."""
    if not path.is_file():
        return False
    try:
        proc = subprocess.run(
            ["git", "-C", str(path.parent), "ls-files", "--error-unmatch", "--", path.name],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _check_location(shown: str, typed: Path, real: Path, folder: bool) -> None:
    """The checks every output shares: names, hidden folders, DVC- and Git-tracked paths."""
    for p in (typed, real):
        if any(fnmatch.fnmatch(p.name, pat) for pat in _PROTECTED_NAMES):
            raise OutputPathError(
                f"{shown}: refusing to write a params or DVC file; choose another path"
            )
        hidden = next((d for d in _PROTECTED_DIRS if d in p.parts), None)
        if hidden:
            raise OutputPathError(
                f"{shown}: refusing to write inside {hidden}/; choose another path"
            )
    if folder and real.is_dir():
        hidden = next((d for d in _PROTECTED_DIRS if (real / d).exists()), None)
        if hidden:
            raise OutputPathError(f"{shown}: holds {hidden}/ (a project); choose another folder")
    repo_root, tracked, why = _dvc_paths(_existing_ancestor(real))
    if why is not None and repo_root is not None:
        root = real_path(repo_root)
        if _inside(real, root) or (folder and _inside(root, real)):
            raise OutputPathError(
                f"{shown}: refusing to write inside the DVC project {root} while DVC cannot "
                f"read what it tracks ({why}); fix that first or write outside the project"
            )
    for p in tracked:
        pr = real_path(p)
        if _inside(real, pr) or (folder and _inside(pr, real)):
            raise OutputPathError(
                f"{shown}: DVC tracks {p} (a pipeline stage's output or dependency); "
                "write elsewhere, e.g. outside data/"
            )
    if repo_root is not None and folder and _inside(real_path(repo_root), real):
        raise OutputPathError(f"{shown}: holds the DVC project {repo_root}; choose another folder")
    if not folder and _git_tracks(real):
        raise OutputPathError(f"{shown}: Git tracks this file; choose another path")


def check_output_path(
    path: str | os.PathLike, force: bool = False, inputs: tuple[Path, ...] = ()
) -> Path:
    """Return the real path of ``path`` if a command may write that file there; raise
    OutputPathError saying why not.

    ``inputs`` are files the command reads (writing over one is refused even with force).
    """
    shown = str(path)
    typed = Path(os.path.abspath(path))
    real = real_path(path)
    _check_location(shown, typed, real, folder=False)
    check_not_input(shown, real, inputs)
    if real.is_dir():
        raise OutputPathError(f"{shown}: is a directory; give a file path")
    if real.exists() or real.is_symlink():
        mode = os.stat(real).st_mode if real.exists() else 0
        if not stat.S_ISREG(mode):
            raise OutputPathError(
                f"{shown}: is not a regular file (a device, pipe, socket or dangling link); "
                "give a file path"
            )
        if not force:
            raise OutputPathError(f"{shown}: already exists; pass --force to replace it")
    if not real.parent.is_dir():
        raise OutputPathError(
            f"{shown}: folder {real.parent} does not exist; create it first (mkdir -p)"
        )
    return real


def check_not_input(shown: str, real: Path, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse writing over one of the command's own input files."""
    for src in inputs:
        if real_path(src) == real:
            raise OutputPathError(f"{shown}: is this command's own input; choose another path")


def check_output_dir(
    path: str | os.PathLike, force: bool = False, files: tuple[str, ...] = (),
    replace: bool = False,
) -> Path:  # fmt: skip
    """Return the real path of folder ``path`` if a command may write there; raise
    OutputPathError saying why not.

    ``files`` are the names the command writes inside it (each existing one needs
    ``force``); ``replace``: the command swaps in a whole new folder, so an existing
    non-empty one needs ``force`` (and :func:`guarded_dir` checks what it holds).
    """
    shown = str(path)
    typed = Path(os.path.abspath(path))
    real = real_path(path)
    _check_location(shown, typed, real, folder=True)
    if real.exists() and not real.is_dir():
        raise OutputPathError(f"{shown}: exists and is not a folder; give a folder path")
    if not real.exists() and not real.parent.is_dir():
        raise OutputPathError(
            f"{shown}: folder {real.parent} does not exist; create it first (mkdir -p)"
        )
    if real.is_dir():
        for name in files:
            f = real / name
            if f.exists() or f.is_symlink():
                if not stat.S_ISREG(os.stat(f).st_mode if f.exists() else 0):
                    raise OutputPathError(f"{shown}: {name} there is not a regular file")
                if not force:
                    raise OutputPathError(
                        f"{shown}: {name} already exists there; pass --force to replace it"
                    )
        if replace and any(real.iterdir()) and not force:
            raise OutputPathError(
                f"{shown}: folder is not empty; pass --force to replace a folder this "
                "command wrote (a folder holding anything else is never deleted)"
            )
    return real


@contextmanager
def guarded_dir(target: Path) -> Iterator[Path]:
    """Yield a path (not yet existing) to build a folder at; on success it replaces
    ``target`` (checked by :func:`check_output_dir`), with the user's umask.

    An existing ``target`` is replaced only when it holds nothing but regular files whose
    names the new folder has too; anything else is refused and left untouched.
    """
    target = Path(target)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        built = stage / "new"
        yield built
        if not built.is_dir():
            raise OutputPathError(f"{target}: nothing was built")
        os.chmod(built, 0o777 & ~umask())
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
                    f"{target}: holds {', '.join(stray[:3])}{' ...' if len(stray) > 3 else ''} "
                    "which this command does not write; left untouched (remove it yourself "
                    "or choose another folder)"
                )
            old = stage / "old"
            os.rename(target, old)
        os.rename(built, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fail(exc: OutputPathError) -> click.ClickException:
    return click.ClickException(str(exc))


def _force(ctx: click.Context | None) -> bool:
    return bool(ctx is not None and ctx.params.get("force"))


class OutputFile(click.ParamType):
    """A file a command writes: checked by :func:`check_output_path` while parsing (the
    command's ``--force`` is eager, so it is known by then); converts to the real path."""

    name = "file"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if ctx is not None and ctx.resilient_parsing:
            return value
        try:
            return check_output_path(value, _force(ctx))
        except OutputPathError as exc:
            raise _fail(exc) from None


class OutputDir(click.ParamType):
    """A folder a command writes (``files`` inside it, or the whole folder with
    ``replace``): checked by :func:`check_output_dir`; converts to the real path.
    ``under_root``: a relative path is relative to the command's (eager) ``--root``."""

    name = "folder"

    def __init__(
        self, files: tuple[str, ...] = (), replace: bool = False, under_root: bool = False
    ) -> None:
        self.files = files
        self.replace = replace
        self.under_root = under_root

    def convert(self, value, param, ctx):  # type: ignore[override]
        if ctx is not None and ctx.resilient_parsing:
            return value
        root = ctx.params.get("root") if ctx is not None and self.under_root else None
        if root is not None and not Path(value).is_absolute():
            value = Path(root) / value
        try:
            return check_output_dir(value, _force(ctx), self.files, self.replace)
        except OutputPathError as exc:
            raise _fail(exc) from None


class OutputFileOrDir(OutputFile):
    """A file, or a folder when ``as_dir(ctx)`` says so (e.g. `export --format hf`, whose
    eager ``--format`` is parsed first): checked as :class:`OutputFile` or as
    :class:`OutputDir` with ``replace``."""

    def __init__(self, as_dir) -> None:
        self.as_dir = as_dir

    def convert(self, value, param, ctx):  # type: ignore[override]
        if ctx is not None and not ctx.resilient_parsing and self.as_dir(ctx):
            return OutputDir(replace=True).convert(value, param, ctx)
        return super().convert(value, param, ctx)


FORCE_OPTION = click.option(
    "--force",
    is_flag=True,
    is_eager=True,  # known when the output options are checked
    help="Replace an existing output (never a file DVC or Git tracks, never a special file).",
)
