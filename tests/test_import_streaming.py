"""Import files are streamed: memory flat in the file's size, a progress bar on a
terminal, one line for a file nested too deeply (issue 27, items 8 and 12)."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.cli import main
from looptool.seed.importers import ToolImportError, read_import
from looptool.seed.importers import base as import_base
from looptool.seed.importers.base import Record, iter_records
from looptool.seed.imports import import_file

TOOL = {"name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
DEEP = "[" * 10000 + "]" * 10000


def _seed_import(path: Path):
    return CliRunner().invoke(main, ["seed", "import", str(path)])


@pytest.mark.parametrize(
    "text", [DEEP, json.dumps(TOOL) + "\n" + DEEP + "\n", '{"tools": ' + DEEP + "}"]
)
def test_deep_nesting_is_one_line(tmp_path: Path, text: str) -> None:
    p = tmp_path / "deep.json"
    p.write_text(text)
    res = _seed_import(p)
    assert "Traceback" not in res.output and not isinstance(res.exception, RecursionError)
    if text.startswith('{"name"'):  # JSON lines: that line is a reject, the tool imported
        assert res.exit_code == 0 and "line 2: JSON nested too deeply" in res.output
    else:
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1, res.output
        assert "deep.json: line 1" in lines[0] and "nested too deeply" in lines[0]


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", ["array", "one_line_array", "jsonl"])
def test_reading_memory_is_flat_in_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    monkeypatch.setattr(import_base, "CHUNK", 1 << 16)
    peaks = []
    for n in (20_000, 80_000):
        p = tmp_path / f"{shape}_{n}.json"
        recs = [{**TOOL, "name": f"tool_{i}"} for i in range(n)]
        if shape == "jsonl":
            p.write_text("".join(json.dumps(r) + "\n" for r in recs))
        elif shape == "array":
            p.write_text(json.dumps(recs, indent=1))
        else:
            p.write_text(json.dumps(recs))
        count = 0

        def consume(p: Path = p) -> None:
            nonlocal count
            for item in iter_records(p, progress=False):
                count += isinstance(item, Record)

        peaks.append(_peak(consume))
        assert count == n
        assert peaks[-1] < p.stat().st_size / 4, (peaks, p.stat().st_size)
    assert peaks[1] < 1.5 * peaks[0], peaks  # 4x the file, about the same memory


def test_records_keep_their_lines_and_ids(tmp_path: Path) -> None:
    one_line = tmp_path / "one.json"
    one_line.write_text(json.dumps([{**TOOL, "name": f"t{i}"} for i in range(3)]))
    res = read_import(one_line)
    assert [t.ref for t in res.tools] == ["one.json:1#0", "one.json:1#1", "one.json:1#2"]
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps([{**TOOL, "name": f"t{i}"} for i in range(3)], indent=2))
    lines = [t.line for t in read_import(pretty).tools]
    assert lines[0] == 2 and lines == sorted(lines) and len(set(lines)) == 3
    assert [t.ref.split(":")[1] for t in read_import(pretty).tools] == [str(x) for x in lines]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"x": {"tools": 1}, "tools": [TOOL, {**TOOL, "name": "b"}]},
                                  indent=2))  # fmt: skip
    assert [t.spec.name for t in read_import(wrapped).tools] == ["get_weather", "b"]
    bad = tmp_path / "bad.json"
    bad.write_text("[\n" + json.dumps(TOOL) + ",\n{oops}\n]")
    with pytest.raises(ToolImportError, match=r"bad.json: line 3 column 2: invalid JSON"):
        read_import(bad)
    latin = tmp_path / "latin.jsonl"
    text = json.dumps({**TOOL, "description": "caf\xe9"}, ensure_ascii=False)
    latin.write_bytes(text.encode("latin-1"))
    with pytest.raises(ToolImportError, match="not UTF-8"):
        read_import(latin)


def test_progress_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "tools.jsonl"
    p.write_text("".join(json.dumps({**TOOL, "name": f"t{i}"}) + "\n" for i in range(50)))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for tty, shown in ((False, False), (True, True)):
        err = Tty() if tty else io.StringIO()
        monkeypatch.setattr("sys.stderr", err)
        assert len(import_file(p).apis) == 50
        assert ("reading tools.jsonl" in err.getvalue()) == shown, err.getvalue()
