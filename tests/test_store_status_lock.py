"""`looptool status` while a DVC command holds the repository lock: say so plainly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from looptool.cli import main

# Takes the lock the way DVC does (zc.lockfile on .dvc/tmp/lock), then waits for stdin.
HOLDER = (
    "import sys, zc.lockfile; l = zc.lockfile.LockFile('.dvc/tmp/lock'); "
    "print('locked', flush=True); sys.stdin.read(); l.close()"
)


def test_status_names_the_running_repro(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True
    )
    (tmp_path / ".dvc/tmp").mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert f"a repro is running: PID {holder.pid}" in res.output
        assert "lock" not in res.output.replace("a repro is running", "")
    finally:
        holder.communicate("")
    # the lock file stays behind once released; it no longer counts
    assert (tmp_path / ".dvc/tmp/lock").exists()
    res = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
    assert res.exit_code == 0 and "a repro is running" not in res.output, res.output
    assert "dvc: up to date" in res.output


def test_status_sees_a_running_stage_in_dvcs_rwlock(tmp_path: Path) -> None:
    # while a stage runs DVC releases .dvc/tmp/lock and lists its PID in .dvc/tmp/rwlock
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True
    )
    (tmp_path / ".dvc/tmp").mkdir(exist_ok=True)
    rwlock = tmp_path / ".dvc/tmp/rwlock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for pid, running in ((int(dead.stdout), False), (live.pid, True)):
            entry = {"pid": pid, "cmd": "dvc repro"}
            rwlock.write_text(json.dumps({"write": {str(tmp_path / "out"): entry}, "read": {}}))
            res = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
            assert res.exit_code == 0, res.output
            assert (f"a repro is running: PID {pid}" in res.output) == running, res.output
    finally:
        live.communicate("")
