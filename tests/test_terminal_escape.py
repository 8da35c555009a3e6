"""Control characters from data never reach the terminal raw: `sql`, `lineage`, `diff`,
`status` and `seed import` print them escaped, in tables, JSON and errors alike
(issue 27, item 11)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from store_synth import build

from looptool.cli import main
from looptool.core.terminal import printable

EVIL = "\x1b]0;pwned\x07\x1b[31mred\r\x9b2J\u202eevil"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def clean(res) -> str:
    assert not RAW.search(res.output), repr(res.output)
    assert "Traceback" not in res.output
    return res.output


def test_printable() -> None:
    assert printable(EVIL) == "\\x1b]0;pwned\\x07\\x1b[31mred\\x0d\\x9b2J\\u202eevil"
    assert printable("a\tb\nc ☂ é") == "a\tb\nc ☂ é"
    text = json.dumps({"k": EVIL}, ensure_ascii=False)
    assert json.loads(printable(text, json=True)) == {"k": EVIL}


@pytest.fixture(scope="module")
def evil_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("evil") / "p"
    build(root, iters=2)
    (root / "params.yaml").write_text("project: {seed: 0}\n")
    seed = root / "data/seed/samples.parquet"
    df = pl.read_parquet(seed)
    df = df.with_columns(
        pl.col("context").str.replace("weather please", EVIL, literal=True),
        pl.col("dialogue_id") + EVIL,
    )
    df.write_parquet(seed)
    return root, df["sample_id"][0]


def test_sql_escapes_cells_and_errors(evil_project: tuple[Path, str]) -> None:
    root, _ = evil_project
    out = clean(run("sql", "SELECT chr(27) || ']0;x' || chr(7) AS a, chr(155) AS b",
                    "--root", root))  # fmt: skip
    assert "\\x1b]0;x\\x07" in out and "\\x9b" in out
    out = clean(run("sql", "SELECT context FROM samples WHERE version = 'seed' LIMIT 2",
                    "--root", root))  # fmt: skip
    assert "\\x1b" in out
    res = run("sql", "SELECT error(chr(27) || '[31mboom' || chr(7))", "--root", root)
    assert res.exit_code == 1 and "\\x1b[31mboom" in clean(res)


def test_lineage_escapes_text_and_json(evil_project: tuple[Path, str]) -> None:
    root, sid = evil_project
    assert "\\x1b" in clean(run("lineage", sid, "--root", root))
    out = clean(run("lineage", sid, "--root", root, "--json"))
    assert "pwned" in out and json.loads(out)["sample_id"] == sid


def test_diff_escapes_examples(evil_project: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = evil_project
    other = tmp_path / "other.parquet"
    df = pl.read_parquet(root / "data/seed/samples.parquet")
    label = '{"text": "' + EVIL + '"}'  # raw, as a damaged or hostile file may hold
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(label)).otherwise(pl.col("label"))
        .alias("label"),
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("changed")).otherwise(pl.col("label_hash"))
        .alias("label_hash"),
    )  # fmt: skip
    df.write_parquet(other)
    assert "\\x1b" in clean(run("diff", "seed", other, "--root", root))
    json.loads(clean(run("diff", "seed", other, "--root", root, "--json")))


def test_status_escapes_what_it_shows(tmp_path: Path) -> None:
    root = tmp_path / f"p{EVIL}"
    build(root, iters=1)
    (root / "params.yaml").write_text("iterations: [\x1b\n")
    out = clean(run("status", "--root", root, "--no-dvc"))
    assert "\\x1b" in out
    data = json.loads(clean(run("status", "--root", root, "--no-dvc", "--json")))
    assert EVIL in data["root"]


def test_seed_import_preview_escapes(tmp_path: Path) -> None:
    tools = [
        {"name": "ok_tool", "description": EVIL,
         "parameters": {"type": "object", "properties": {f"x{EVIL}": {"type": "string"}}}},
        {"name": f"bad{EVIL}", "parameters": {"type": "object", "properties": {}}},
    ]  # fmt: skip
    f = tmp_path / f"tools{EVIL[:6]}.json"
    f.write_text(json.dumps(tools))
    out = clean(run("seed", "import", f))
    assert "\\x1b" in out
    data = json.loads(clean(run("seed", "import", f, "--json")))
    assert data["tools"][0]["parameters"] == [f"x{EVIL}"]  # the same value, escaped
    shutil.rmtree(tmp_path, ignore_errors=True)
