"""Nothing a user types may destroy data: read-only `looptool sql`, guarded outputs,
clean errors on corrupt tables and on a --root that is not a project."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_synth import build

from looptool.cli import main

DVC_YAML = """stages:
  init_dataset:
    cmd: "true"
    deps:
      - data/seed/samples.parquet
    outs:
      - data/iter_1/dataset.parquet
  compose:
    foreach:
      - {j: 1, next: 2}
      - {j: 2, next: 3}
    do:
      cmd: "true"
      outs:
        - data/iter_${item.next}/dataset.parquet
"""


def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (the DVC cache included)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic built project that is a DVC repository with a filled cache."""
    root = tmp_path_factory.mktemp("guarded")
    build(root, iters=2)
    (root / "params.yaml").write_text("project: {seed: 0}\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=root, check=True)
    # a filled cache, so a COPY ... PARTITION_BY over .dvc/cache would have something to delete
    subprocess.run([*dvc, "add", "-q", "data/seed/heldout.parquet"], cwd=root, check=True)
    assert any((root / ".dvc/cache").rglob("*"))
    return root


@pytest.fixture()
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # relative paths in a query would land in the project, where the tree hash sees them
    monkeypatch.chdir(project)
    return project


def sql(root: Path, *args: str):
    return CliRunner().invoke(main, ["sql", *args, "--root", str(root)])


ATTACKS = [
    "COPY (SELECT 1 AS x, 1 AS p) TO '.dvc/cache' (FORMAT parquet, PARTITION_BY (p), OVERWRITE)",
    "COPY (SELECT 1 AS x) TO 'data/iter_1/dataset.parquet' (FORMAT parquet)",
    "SELECT 1; COPY (SELECT 1 AS x) TO 'data/iter_1/dataset.parquet' (FORMAT parquet)",
    "SELECT 1 AS a; SELECT 2; COPY datasets TO 'params.yaml' (FORMAT csv)",
    "ATTACH 'data/iter_1/evil.db' AS evil",
    "ATTACH 'data/iter_1/evil.db' AS evil; CREATE TABLE evil.t AS SELECT 1",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "EXPORT DATABASE 'data/exported'",
    "CREATE TABLE t AS SELECT * FROM datasets",
    "PRAGMA enable_profiling",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'data/x.csv'",
    "CHECKPOINT",
]


@pytest.mark.parametrize("query", ATTACKS)
def test_write_attach_install_are_refused_and_nothing_changes(in_project: Path, query: str) -> None:
    before = tree_hash(in_project)
    res = sql(in_project, query)
    assert res.exit_code == 1, res.output
    assert "read-only" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert tree_hash(in_project) == before


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('params.yaml')",
        "SELECT * FROM read_text('data/../params.yaml')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM 'https://example.com/x.parquet'",
    ],
)
def test_reads_outside_data_are_refused(in_project: Path, query: str) -> None:
    before = tree_hash(in_project)
    res = sql(in_project, query)
    assert res.exit_code == 1 and "Permission Error" in res.output, res.output
    assert tree_hash(in_project) == before


def test_reads_still_work(in_project: Path) -> None:
    res = sql(in_project, "SELECT count(*) AS n FROM 'data/seed/samples.parquet'; FROM datasets")
    assert res.exit_code == 0, res.output
    assert "sample_id" in res.output  # the last statement's result is shown
    res = sql(in_project, "DESCRIBE verdicts")
    assert res.exit_code == 0 and "verdict" in res.output, res.output


# Statement pieces a careless or hostile user might type, joined into (multi-)statements.
_TARGETS = ["'.dvc/cache'", "'data/iter_1/dataset.parquet'", "'params.yaml'", "'dvc.yaml'",
            "'data/seed'", "'new.csv'", "'data/iter_1/x.db'"]  # fmt: skip
_WRITES = st.one_of(
    st.builds(lambda t, o: f"COPY (SELECT 1 AS x, 1 AS p) TO {t} {o}", st.sampled_from(_TARGETS),
              st.sampled_from(["", "(FORMAT parquet)", "(FORMAT parquet, PARTITION_BY (p), OVERWRITE)",
                               "(FORMAT csv, OVERWRITE_OR_IGNORE)"])),  # fmt: skip
    st.builds(lambda t: f"ATTACH {t} AS a", st.sampled_from(_TARGETS)),
    st.builds(lambda t: f"EXPORT DATABASE {t}", st.sampled_from(_TARGETS)),
    st.sampled_from([
        "INSTALL httpfs", "LOAD json", "SET temp_directory = 'data'", "SET threads = 1",
        "CREATE TABLE t AS SELECT 1", "CREATE VIEW datasets AS SELECT 1", "DROP VIEW probe",
        "INSERT INTO t VALUES (1)", "CHECKPOINT", "VACUUM", "PRAGMA memory_limit='1GB'",
        "CALL pragma_version()", "BEGIN", "USE memory", "DETACH a", "RESET threads",
        "CREATE MACRO m() AS 1", "CREATE SECRET s (TYPE s3)", "UPDATE t SET x = 2",
    ]),
)  # fmt: skip
_READS = st.sampled_from([
    "SELECT 1", "FROM datasets LIMIT 1", "SELECT count(*) FROM verdicts", "SUMMARIZE probe",
    "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM 'data/seed/samples.parquet' LIMIT 1",
    "WITH a AS (SELECT 1 AS x) SELECT * FROM a", "VALUES (1), (2)", "SELECT 'COPY x TO y'",
    "SELECT * FROM glob('*')", "FROM metrics LIMIT 2",
])  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    database=None,  # its example database would be written into the hashed project (the cwd)
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    parts=st.lists(st.one_of(_WRITES, _READS), min_size=1, max_size=4),
    sep=st.sampled_from([";", ";\n", " ; -- note\n", ";/* c */"]),
    lower=st.booleans(),
)  # fmt: skip
def test_fuzz_sql_never_changes_a_file(
    in_project: Path, parts: list[str], sep: str, lower: bool
) -> None:
    query = sep.join(parts)
    if lower:
        query = query.lower()
    before = tree_hash(in_project)
    res = sql(in_project, query)
    crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
    assert res.exit_code in (0, 1) and not crashed, res.output
    assert tree_hash(in_project) == before, query


# --- guarded outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target,why",
    [
        ("data/iter_1/dataset.parquet", "DVC tracks"),
        ("data/iter_3/dataset.parquet", "DVC tracks"),  # a foreach stage's output
        ("data/seed/samples.parquet", "DVC tracks"),  # a stage's dependency
        ("data/seed/heldout.parquet", "DVC tracks"),  # a `dvc add`ed file
        ("params.yaml", "params or DVC file"),
        ("params.smol.yaml", "params or DVC file"),
        ("dvc.yaml", "params or DVC file"),
        ("dvc.lock", "params or DVC file"),
        (".dvc/config", "inside .dvc/"),
        (".dvc/cache/new.csv", "inside .dvc/"),
    ],
)
def test_outputs_refuse_tracked_and_pipeline_files(in_project: Path, target: str, why: str) -> None:
    before = tree_hash(in_project)
    for flag in ("--csv", "--parquet"):
        res = sql(in_project, "SELECT 1 AS x", flag, target, "--force")
        assert res.exit_code == 1 and why in res.output, res.output
    res = CliRunner().invoke(
        main, ["export", "D2", "--format", "parquet", "--out", target, "--force",
               "--root", str(in_project)],
    )  # fmt: skip
    assert res.exit_code == 1 and why in res.output, res.output
    assert tree_hash(in_project) == before


def test_outputs_refuse_existing_without_force_and_missing_folders(
    in_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    assert sql(in_project, "SELECT 1 AS x", "--csv", str(out)).exit_code == 0
    first = out.read_bytes()
    res = sql(in_project, "SELECT 2 AS x", "--csv", str(out))
    assert res.exit_code == 1 and "already exists; pass --force" in res.output
    assert out.read_bytes() == first
    assert sql(in_project, "SELECT 2 AS x", "--csv", str(out), "--force").exit_code == 0
    assert out.read_bytes() != first
    res = sql(in_project, "SELECT 1 AS x", "--parquet", str(tmp_path / "no" / "such" / "r.parquet"))
    assert res.exit_code == 1 and "does not exist; create it first" in res.output
    assert not (tmp_path / "no").exists()
    exp = tmp_path / "d1.jsonl"
    args = ["export", "D1", "--format", "openai", "--date", "2026-01-01", "--root", str(in_project),
            "--out", str(exp)]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "already exists" in res.output


def test_export_refuses_its_own_input(in_project: Path, tmp_path: Path) -> None:
    src = tmp_path / "mine.parquet"
    shutil.copy(in_project / "data/iter_1/dataset.parquet", src)
    before = src.read_bytes()
    res = CliRunner().invoke(
        main, ["export", str(src), "--format", "parquet", "--out", str(src), "--force",
               "--root", str(in_project)],
    )  # fmt: skip
    assert res.exit_code == 1 and "own input" in res.output, res.output
    assert src.read_bytes() == before


def test_eval_bfcl_refuses_to_write_over_its_predictions(tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "simple_0", "result": "[f(a=1)]"}\n')
    before = preds.read_bytes()
    res = CliRunner().invoke(
        main, ["eval", "bfcl", "--predictions", str(preds), "--out", str(preds), "--force"]
    )
    assert res.exit_code == 1 and "own input" in res.output, res.output
    assert preds.read_bytes() == before


# --- corrupt tables ----------------------------------------------------------------------


def test_truncated_parquet_gives_one_clean_line(tmp_path: Path) -> None:
    root = tmp_path / "p"
    build(root, iters=2)
    bad = root / "data/iter_1/probe.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    for query in ("SELECT 1", "SELECT count(*) FROM verdicts", "SELECT count(*) FROM samples"):
        res = sql(root, query)
        assert res.exit_code == 0, res.output
    res = sql(root, "SELECT count(*) FROM probe")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "data/iter_1/probe.parquet" in lines[0] and "dvc checkout" in lines[0]
    assert "dvc repro" in lines[0]
    sid = pl.read_parquet(root / "data/iter_1/dataset.parquet")["sample_id"][0]
    res = CliRunner().invoke(main, ["lineage", sid, "--root", str(root)])
    assert res.exit_code == 1 and "data/iter_1/probe.parquet" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    listing = sql(root)
    assert listing.exit_code == 0 and "probe: unavailable" in listing.output
    assert "verdicts: iter INTEGER" in listing.output


def test_connection_is_locked_down(project: Path) -> None:
    from looptool.store.views import connect

    con = connect(project)
    settings = dict(con.sql(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', "
        "'temp_directory')"
    ).fetchall())  # fmt: skip
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["autoload_known_extensions"] == "false"
    # spill files never land in the working directory (DuckDB's in-memory default: .tmp)
    assert not Path(settings["temp_directory"]).resolve().is_relative_to(project.resolve())


def test_status_ignores_a_corrupt_table_it_does_not_read(tmp_path: Path) -> None:
    root = tmp_path / "p"
    build(root, iters=2)
    bad = root / "data/iter_2/verdicts.parquet"
    bad.write_bytes(b"PAR1 truncated")
    res = CliRunner().invoke(main, ["status", "--no-dvc", "--root", str(root)])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
