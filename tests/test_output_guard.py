"""One output guard for every command that writes a path the user names (issue 27).

The CLI walk finds every command and every option that names a path: each must be a
read input listed here or an output checked by looptool.store.output_guard, and every
output is tried against the project's protected paths through the real command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from store_synth import build
from test_store_guards import DVC_YAML, tree_hash

from looptool.cli import main
from looptool.store.output_guard import OutputDir, OutputFile

# a stage that depends on a source file: an unreadable dvc.lock must not expose it
GUARD_DVC_YAML = (
    DVC_YAML
    + """  check_params:
    cmd: "true"
    deps:
      - stages/check_params.py
"""
)


def _make_project(root: Path) -> Path:
    build(root, iters=2)
    (root / "params.yaml").write_text("project: {seed: 0}\n")
    (root / "dvc.yaml").write_text(GUARD_DVC_YAML)
    (root / "stages").mkdir()
    (root / "stages/check_params.py").write_text("print('ok')\n")
    (root / "README.md").write_text("# a project\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=root, check=True)
    subprocess.run([*dvc, "add", "-q", "data/seed/heldout.parquet"], cwd=root, check=True)
    subprocess.run([*git, "add", "README.md", "stages"], check=True)
    (root / "dd").symlink_to(".dvc")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_project(tmp_path_factory.mktemp("out_guard"))


@pytest.fixture()
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *needles: str) -> None:
    """Exit 1 with one error line, the last (a library's progress bar may precede it)."""
    lines = [x for x in res.output.strip().splitlines() if "Writing model shards" not in x]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].lower().startswith("error:"), res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], res.output


# --- the CLI walk ----------------------------------------------------------------------

# options that name a path a command only reads (or its request cache, see README)
READ_INPUTS = {"root", "data_dir", "predictions", "compare_csv", "params_file", "params_path",
               "file", "cache_dir", "model"}  # fmt: skip
PATHLIKE = re.compile(r"(^|_)(out|dir|path|file|csv|parquet|dest|save|write|target)")
WRITERS = {("sql",), ("export",), ("report",), ("eval", "bfcl"), ("eval", "bfcl-run"),
           ("build-tiny-model",), ("import-model",), ("compare",), ("seed", "import")}  # fmt: skip


def walk(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), (*path, name))
    else:
        yield path, cmd


def output_params() -> list[tuple[tuple[str, ...], click.Command, click.Parameter]]:
    return [
        (path, cmd, p)
        for path, cmd in walk(main)
        for p in cmd.params
        if isinstance(p.type, OutputFile | OutputDir)
    ]


def test_every_path_option_is_an_input_or_a_guarded_output() -> None:
    bypass = []
    for path, cmd in walk(main):
        for p in cmd.params:
            if isinstance(p.type, OutputFile | OutputDir) or p.name in READ_INPUTS:
                continue
            if isinstance(p.type, click.Path) or PATHLIKE.search(p.name or ""):
                bypass.append(f"{' '.join(path)} {p.name}")
    assert not bypass, f"options naming a path that bypass the output guard: {bypass}"
    assert {path for path, _, _ in output_params()} == WRITERS


FILE_TARGETS = ["params.yaml", "dvc.lock", "dd/config", "data/iter_1/dataset.parquet",
                "data/seed/heldout.parquet", "stages/check_params.py", "README.md",
                "data/../.git/config"]  # fmt: skip
DIR_TARGETS = [".", "dd/x", "data/iter_1", "data/seed", ".git/x", "stages"]


@pytest.mark.parametrize("where", [f"{' '.join(p)} {prm.opts[0]}" for p, _, prm in output_params()])
def test_every_output_refuses_the_pipeline_files(in_project: Path, where: str) -> None:
    path, cmd, param = next(
        (p, c, prm) for p, c, prm in output_params() if f"{' '.join(p)} {prm.opts[0]}" == where
    )
    force = ["--force"] if any(q.name == "force" for q in cmd.params) else []
    targets = DIR_TARGETS if isinstance(param.type, OutputDir) else FILE_TARGETS
    # export's --out is a file, or a folder with --format hf (its eager --format decides)
    kinds = [(["--format", "parquet"], FILE_TARGETS), (["--format", "hf"], DIR_TARGETS)]
    runs = kinds if path == ("export",) else [([], targets)]
    before = tree_hash(in_project)
    for extra, targets in runs:
        for target in targets:
            res = run(*path, *extra, param.opts[0], target, *force)
            one_line_error(res, target)
    assert tree_hash(in_project) == before


# --- 1. eval bfcl --out ------------------------------------------------------------------


def _bfcl(tmp: Path) -> tuple[Path, Path]:
    doc = {"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {}}}
    d = tmp / "bfcl"
    (d / "possible_answer").mkdir(parents=True)
    (d / "BFCL_v4_irrelevance.json").write_text(
        json.dumps({"id": "irrelevance_0", "function": [doc]})
    )
    preds = tmp / "preds.jsonl"
    preds.write_text(json.dumps({"id": "irrelevance_0", "result": "no"}) + "\n")
    return d, preds


def test_eval_bfcl_out_is_guarded(in_project: Path, tmp_path: Path) -> None:
    data, preds = _bfcl(tmp_path)
    base = ["eval", "bfcl", "--data", data, "--predictions", preds]
    (in_project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    try:
        before = tree_hash(in_project)
        for target in ("dvc.lock", "params.yaml", "data/iter_1/eval.json"):
            one_line_error(run(*base, "--out", target), target)
        assert tree_hash(in_project) == before
    finally:
        (in_project / "dvc.lock").unlink()
    missing = tmp_path / "a" / "b" / "x.jsonl"
    one_line_error(run(*base, "--out", missing), "does not exist")
    assert not (tmp_path / "a").exists()
    out = tmp_path / "x.jsonl"
    assert run(*base, "--out", out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    one_line_error(run(*base, "--out", out), "already exists")
    assert run(*base, "--out", out, "--force").exit_code == 0


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


# --- 2. report --out ---------------------------------------------------------------------


def test_report_out_is_guarded(in_project: Path, tmp_path: Path) -> None:
    for target in ("params.yaml", "data/iter_1/eval.json"):
        before = (in_project / target).read_bytes()
        one_line_error(run("report", "--out", target), target)
        assert (in_project / target).read_bytes() == before
    one_line_error(run("report", "--out", tmp_path / "nodir" / "r.html"), "does not exist")
    assert not (tmp_path / "nodir").exists()
    out = tmp_path / "r.html"
    out.write_text("mine")
    one_line_error(run("report", "--out", out), "already exists")
    assert out.read_text() == "mine"


# --- 3. folders: build-tiny-model, import-model -------------------------------------------


def test_build_tiny_model_never_deletes_a_folder_it_did_not_write(
    in_project: Path, tmp_path: Path
) -> None:
    before = tree_hash(in_project)
    one_line_error(run("build-tiny-model", "--out", "data/iter_2"), "data/iter_2")
    one_line_error(run("build-tiny-model", "--out", "data/iter_2", "--force"), "data/iter_2")
    assert tree_hash(in_project) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(run("build-tiny-model", "--out", mine), "not empty")
    one_line_error(run("build-tiny-model", "--out", mine, "--force"), "notes.txt")
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    one_line_error(run("build-tiny-model", "--out", tmp_path / "no" / "m"), "does not exist")
    out = tmp_path / "m"
    assert run("build-tiny-model", "--out", out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()
    one_line_error(run("build-tiny-model", "--out", out), "not empty")
    res = run("build-tiny-model", "--out", out, "--force")  # its own output: replaced
    assert res.exit_code == 0, res.output


def test_import_model_never_deletes_a_folder_it_did_not_write(
    in_project: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "ckpt"
    mine.mkdir()
    (mine / "weights.bin").write_text("x")
    one_line_error(run("import-model", "--out", mine), "not empty")
    assert (mine / "weights.bin").read_text() == "x"


def test_bfcl_run_refuses_existing_results_before_running(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "scores.json").write_text("{}")
    res = run("eval", "bfcl-run", "--model", tmp_path / "no-model", "--out", out)
    one_line_error(res, "scores.json", "--force")
    assert (out / "scores.json").read_text() == "{}"


# --- 4. symlinks -------------------------------------------------------------------------


def test_symlinked_folders_and_files_are_resolved(in_project: Path, tmp_path: Path) -> None:
    obj = next(p for p in (in_project / ".dvc/cache").rglob("*") if p.is_file())
    via_link = "dd/" + str(obj.relative_to(in_project / ".dvc"))
    link = in_project / "p.csv"
    link.symlink_to("params.yaml")
    try:
        before = tree_hash(in_project)
        for args in (
            ("sql", "SELECT 1 a", "--csv", "dd/config", "--force"),
            ("sql", "SELECT 1 a", "--parquet", via_link, "--force"),
            ("sql", "SELECT 1 a", "--csv", "p.csv", "--force"),
            ("export", "D1", "--format", "parquet", "--out", "dd/config", "--force"),
            ("report", "--out", "dd/config", "--force"),
        ):
            one_line_error(run(*args))
        assert tree_hash(in_project) == before
    finally:
        link.unlink()


# --- 5. an unreadable dvc.lock ------------------------------------------------------------


def test_unreadable_dvc_lock_refuses_the_whole_project(tmp_path: Path, monkeypatch) -> None:
    root = _make_project(tmp_path / "p")
    (root / "dvc.lock").write_text("stages: [\n")
    monkeypatch.chdir(root)
    before = tree_hash(root)
    for target in ("stages/check_params.py", "stages/new.csv", "new.csv"):
        one_line_error(run("sql", "SELECT 1 a", "--csv", target, "--force"), "DVC cannot read")
    assert tree_hash(root) == before
    outside = tmp_path / "r.csv"
    assert run("sql", "SELECT 1 a", "--csv", outside).exit_code == 0


# --- 6. special files --------------------------------------------------------------------


def test_special_files_are_never_replaced(in_project: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (
        ("sql", "SELECT 1 a", "--csv", fifo, "--force"),
        ("sql", "SELECT 1 a", "--parquet", fifo, "--force"),
        ("report", "--out", fifo),
        ("report", "--out", fifo, "--force"),
        ("export", "D1", "--format", "parquet", "--out", fifo, "--force"),
    ):
        one_line_error(run(*args), "not a regular file")
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    out = tmp_path / "new.csv"
    assert run("sql", "SELECT 1 a", "--csv", out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    shutil.rmtree(tmp_path, ignore_errors=True)


# --- 12. permissions: outputs get the user's umask, as open() would create them ------------


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_get_the_users_umask(in_project: Path, tmp_path: Path, mask: int) -> None:
    import pyarrow as pa

    from looptool.store.io import (
        atomic_dir,
        atomic_path,
        write_json_atomic,
        write_parquet_atomic,
        write_text_atomic,
    )
    from looptool.store.stream import parquet_rows_atomic

    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    schema = pa.schema([("a", pa.int64())])
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(mask)
    try:
        write_text_atomic(out / "t.txt", "x")
        write_json_atomic(out / "j.json", {"a": 1})
        write_parquet_atomic(out / "p.parquet", pa.table({"a": [1]}))
        with parquet_rows_atomic(out / "rows.parquet", schema) as rows:
            rows.add({"a": 1})
        with atomic_path(out / "raw.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(out / "folder") as d:
            (d / "f.txt").write_text("x")
        for flag, name in (("--csv", "q.csv"), ("--parquet", "q.parquet")):
            res = run("sql", "SELECT 1 a", flag, out / name)
            assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {
        **dict.fromkeys(("t.txt", "j.json", "p.parquet", "rows.parquet", "raw.bin"), file_mode),
        **{"q.csv": file_mode, "q.parquet": file_mode, "folder": dir_mode},
    }, {k: oct(v) for k, v in modes.items()}
    if mask == 0o022:
        assert set(modes.values()) == {0o644, 0o755}
