"""Is a DVC command (e.g. `dvc repro`) running in a repository right now?

DVC holds an exclusive flock on ``.dvc/tmp/lock`` (zc.lockfile; the file holds the PID)
while it reads the pipeline, and while a stage runs it lists the stage's outputs with
its PID in ``.dvc/tmp/rwlock`` (JSON). Both files stay behind afterwards, so only a held
lock or the PID of a live process counts.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _locked_pid(lock: Path) -> int | None:
    """The PID in ``lock`` if some process holds its flock; -1 if held without a PID."""
    try:
        fh = open(lock, "rb")  # read-only: checking never changes the file
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read(32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def _rwlock_pids(rwlock: Path) -> list[int]:
    """Live PIDs listed in DVC's rwlock file (stages running now)."""
    try:
        info = json.loads(rwlock.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(info, dict):  # a damaged file lists nothing we can trust
        return []
    writers, readers = info.get("write"), info.get("read")
    entries = list(writers.values()) if isinstance(writers, dict) else []
    for group in readers.values() if isinstance(readers, dict) else []:
        entries += group if isinstance(group, list) else []
    pids = {e.get("pid") for e in entries if isinstance(e, dict)}
    return sorted(p for p in pids if isinstance(p, int) and p > 0 and _alive(p))


def running_dvc_pid(repo_root: str | Path) -> int | None:
    """PID of a live DVC process working in the repository (-1: unknown PID), or None."""
    tmp = Path(repo_root) / ".dvc" / "tmp"
    pid = _locked_pid(tmp / "lock")
    if pid is not None:
        return pid
    live = _rwlock_pids(tmp / "rwlock")
    return live[0] if live else None


def dvc_config_problem(repo_root: str | Path) -> str | None:
    """One line naming the DVC config file DVC cannot read (syntax, encoding or an unknown
    option), or None. Every `dvc` command fails on it, some with a traceback."""
    from dvc.config import Config, ConfigError

    dvc_dir = Path(repo_root) / ".dvc"
    try:
        Config(dvc_dir=str(dvc_dir))
    except (ConfigError, OSError, ValueError) as exc:
        why = " ".join(str(exc).split()).removeprefix("config file error: ")
        for name in (Config.CONFIG, Config.CONFIG_LOCAL):  # which file, when it is ours
            path = dvc_dir / name
            try:
                if path.exists():
                    Config.load_file(str(path))
            except (ConfigError, OSError, ValueError):
                return f"{path}: DVC cannot read it ({why})"
        return f"{dvc_dir / Config.CONFIG} (or the global / system DVC config): {why}"
    return None


def dvc_error_line(stderr: str) -> str:
    """A failed `dvc` command's stderr as one line: its ERROR line, else the message
    without DVC's source excerpts (``  2   stages: [``) and blank lines."""
    lines = [ln.strip() for ln in stderr.splitlines()]
    for ln in lines:
        if ln.startswith("ERROR:"):
            return ln.removeprefix("ERROR:").strip()
    if any(ln.startswith("Traceback") for ln in lines):
        return next((ln for ln in reversed(lines) if ln), "(no output)")
    prose = [ln for ln in lines if ln and not re.match(r"^\d+(\s|$)", ln)]
    return " ".join(prose) or "(no output)"
