"""`looptool sql` is bounded (wall clock, memory, temp spill), Ctrl-C ends with one line,
and every read outside the project's data/ gets the same answer (issue 27, items 7 and 9)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from store_synth import build

import looptool
from looptool.cli import main

CROSS = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bounded")
    build(root, iters=1)
    (root / "params.yaml").write_text("project: {seed: 0}\n")
    return root


def sql(root: Path, *args: str):
    return CliRunner().invoke(main, ["sql", *args, "--root", str(root)])


def one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    return lines[0]


def test_wall_clock_limit(project: Path) -> None:
    t0 = time.monotonic()
    line = one_line(sql(project, CROSS, "--timeout", "2"))
    assert time.monotonic() - t0 < 30
    assert "2 s" in line and "--timeout" in line


def test_memory_and_temp_limits(project: Path) -> None:
    line = one_line(
        sql(project, "SELECT list(range) FROM range(100000000)", "--memory-limit", "64MB")
    )
    assert "memory" in line.lower() and "--memory-limit" in line
    from looptool.store.views import SqlLimits, connect

    con = connect(project, limits=SqlLimits(memory_limit="300MB", max_temp_size="1GB"))
    got = dict(con.sql(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('memory_limit', 'max_temp_directory_size', 'lock_configuration')"
    ).fetchall())  # fmt: skip
    assert got["memory_limit"] == "286.1 MiB" and got["max_temp_directory_size"] == "953.6 MiB"
    assert got["lock_configuration"] == "true"
    with pytest.raises(duckdb.Error):
        con.execute("SET memory_limit = '100GB'")
    res = sql(project, "SELECT 1", "--memory-limit", "lots")
    assert res.exit_code != 0 and "--memory-limit" in res.output and "Traceback" not in res.output


def test_ctrl_c_ends_with_one_line(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(looptool.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "looptool.cli", "sql", CROSS, "--root", str(project)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("Ctrl-C did not stop the query")
    lines = out.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "interrupted" in lines[0], out


OUTSIDE = [
    "SELECT * FROM read_json_auto('{p}')",
    "SELECT * FROM read_parquet('{p}')",
    "SELECT * FROM read_csv('{p}')",
    "SELECT * FROM read_text('{p}')",
    "SELECT * FROM '{p}'",
]


@pytest.mark.parametrize("query", OUTSIDE)
def test_outside_reads_are_indistinguishable(project: Path, query: str) -> None:
    answers = set()
    for path in ("/proc/self/environ", "/nonexistent", "/etc/passwd", str(project / "params.yaml")):
        line = one_line(sql(project, query.format(p=path)))
        answers.add(line.replace(path, "PATH"))
    assert len(answers) == 1, answers
    if "read_" in query:  # a bare '...' string of no known format is "no such table" for all
        assert "Permission Error" in answers.pop()


def test_data_allowance_resolves_against_root(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    other = tmp_path / "data" / "other.parquet"
    duckdb.connect().execute(f"COPY (SELECT 42 AS secret) TO '{other}'")
    monkeypatch.chdir(tmp_path)
    for q in (f"FROM '{other}'", "FROM 'data/other.parquet'"):
        line = one_line(sql(project, q))
        assert "Permission Error" in line or "No files found" in line, line
    res = sql(project, "SELECT count(*) AS n FROM 'data/seed/samples.parquet'")
    assert res.exit_code == 0 and re.search(r"\b40\b", res.output), res.output
