"""Import files are streamed: memory flat in the file's size, a progress bar on a
terminal, one line for a file nested too deeply (issue 27, items 8 and 12)."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
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


# --- the import result is streamed too: seed_apis and the preview keep no lists ------------

PAD = "Padding that real datasets carry in descriptions and tool results. " * 12


def _chat_line(i: int) -> str:
    """A chat with its own tool; every 10th a bare tool reusing a name (a dedup reject),
    every 10th a tool with a bad type (a reject that carries the whole record)."""
    if i % 10 == 9:
        return json.dumps({**TOOL, "name": f"item_{i - 1}", "description": f"dup {i}"}) + "\n"
    props = {"item_id": {"type": "strng" if i % 10 == 4 else "string", "description": "Id."}}
    tool = {
        "type": "function",
        "function": {
            "name": f"item_{i}",
            "description": PAD,
            "parameters": {"type": "object", "properties": props, "required": ["item_id"]},
        },
    }
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": f"item_{i}", "arguments": json.dumps({"item_id": f"A-{i}"})},
    }
    messages = [
        {"role": "user", "content": f"Look up item A-{i}."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": json.dumps({"stock": i % 7, "note": PAD})},
        {"role": "assistant", "content": f"Item A-{i}: {i % 7} in stock."},
    ]  # fmt: skip
    return json.dumps({"messages": messages, "tools": [tool]}) + "\n"


def _stage_params(tmp: Path, data: Path) -> Path:
    import yaml

    root = Path(__file__).resolve().parents[1]
    raw = {
        "project": {"seed": 0, "cache_dir": str(tmp / "cache")},
        "engines": {"generator": {"backend": "template"}},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
        "seed": {
            "trees": {
                k: str(root / f"data/trees/{k}_tree.yaml") for k in ("context", "constraint")
            },
            "apis": {"n_draws": 0, "imports": [{"path": str(data)}]},
        },
    }
    p = tmp / f"params_{data.stem}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_import_result_memory_is_flat_in_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seed_apis and `seed import` hold one batch of rows, never the whole result: with 4x
    the records the traced peak stays below the file's size and grows by a fraction of
    what the file grows (the names kept for dedup). Before, the API rows, dialogue rows and
    rejects (with their whole records) were lists: the peak was several times the file's
    size and grew with it."""
    from looptool.params import load_params
    from looptool.seed.import_preview import ImportPreview
    from looptool.seed.pipeline import run_apis
    from looptool.store import stream

    monkeypatch.setattr(import_base, "CHUNK", 1 << 16)
    monkeypatch.setattr(stream, "BATCH_ROWS", 64)
    monkeypatch.setattr(stream, "BATCH_BYTES", 1 << 18)
    monkeypatch.setattr(stream, "ROW_GROUP_BYTES", 1 << 20)
    peaks: dict[str, list[int]] = {"stage": [], "preview": []}
    warm = tmp_path / "warm.jsonl"
    warm.write_text("".join(_chat_line(i) for i in range(20)))
    run_apis(load_params(_stage_params(tmp_path, warm)), tmp_path / "warm_out")
    sizes = []
    for n in (1500, 6000):
        p = tmp_path / f"chats_{n}.jsonl"
        p.write_text("".join(_chat_line(i) for i in range(n)))
        sizes.append(p.stat().st_size)
        params = load_params(_stage_params(tmp_path, p))
        out = tmp_path / f"out_{n}"
        peaks["stage"].append(_peak(lambda params=params, out=out: run_apis(params, out)))
        metrics = json.loads((out / "apis_metrics.json").read_text())["imports"][str(p)]
        assert metrics["dialogues"] == n * 8 // 10 and metrics["rejected"] == n // 5

        def preview(p: Path = p, n: int = n) -> None:
            with ImportPreview(p, progress=False) as pv:
                assert sum(1 for _ in pv.tools()) == pv.n_tools == n * 8 // 10
                assert sum(1 for _ in pv.rejects()) == pv.n_rejects == n // 5

        peaks["preview"].append(_peak(preview))
    for name, (small, big) in peaks.items():
        assert big < sizes[1], (name, peaks, sizes)
        assert big - small < (sizes[1] - sizes[0]) / 4, (name, peaks, sizes)


def test_streamed_stage_writes_what_the_lists_hold(tmp_path: Path, monkeypatch) -> None:
    """Row for row and in order, in many small batches: API rows, then per file its
    rejects and after them its dedup rejects, dialogues numbered on across files."""
    import yaml

    from looptool.core.tables import APIS, DIALOGUES, REJECTS, rows_to_table
    from looptool.params import load_params
    from looptool.seed.pipeline import run_apis
    from looptool.store import stream

    monkeypatch.setattr(stream, "BATCH_ROWS", 5)
    monkeypatch.setattr(stream, "ROW_GROUP_BYTES", 4000)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(_chat_line(i) for i in range(120)))
    b.write_text("".join(_chat_line(i) for i in range(60, 200)))  # names the pool holds
    params = _stage_params(tmp_path, a)
    raw = yaml.safe_load(params.read_text())
    raw["seed"]["apis"]["imports"].append({"path": str(b), "limit": 100})
    params.write_text(yaml.safe_dump(raw))
    metrics = run_apis(load_params(params), tmp_path / "out")
    taken: set[str] = set()
    fa = import_file(a, taken=taken)
    fb = import_file(b, taken=taken, limit=100, first_index=len(fa.dialogues))
    assert fb.rejects and any(r.tier == "dedup" for r in fb.rejects)

    def table(name: str, rows: list[dict], schema) -> None:
        got = pq.read_table(tmp_path / "out" / name)
        assert got.to_pylist() == rows_to_table(rows, schema).to_pylist()

    table("apis.parquet", fa.apis + fb.apis, APIS)
    table("api_rejects.parquet", fa.reject_rows() + fb.reject_rows(), REJECTS)
    table("imported.parquet", fa.dialogues + fb.dialogues, DIALOGUES)
    assert metrics["imports"] == {str(a): fa.metrics(), str(b): fb.metrics()}
    assert pq.ParquetFile(tmp_path / "out" / "api_rejects.parquet").num_row_groups > 1


def test_a_schema_is_checked_once_and_answers_the_same(monkeypatch) -> None:
    """The metaschema check (most of an import's time) runs once per distinct schema."""
    import jsonschema

    from looptool.core import types
    from looptool.core.types import ToolSpec, ToolSpecError

    calls = []
    real = jsonschema.Draft202012Validator.check_schema
    monkeypatch.setattr(types, "_CHECKED", types.collections.OrderedDict())
    monkeypatch.setattr(
        jsonschema.Draft202012Validator, "check_schema", lambda s: calls.append(s) or real(s)
    )
    bad = {"type": "object", "properties": {"a": {"type": "string", "enum": "x"}}}
    errors = []
    for name in ("f", "g", "f"):
        ToolSpec.from_any({**TOOL, "name": name})
        with pytest.raises(ToolSpecError) as exc:
            ToolSpec.from_any({"name": name, "parameters": bad})
        errors.append(str(exc.value).split(": ", 1)[1])
    assert len(calls) == 2 and len(set(errors)) == 1 and "invalid JSON schema" in errors[0]
    assert "'x' is not of type 'array'" in errors[0]
    # a tuple where a list belongs is no list to jsonschema: not answered from the cache
    tup = {"type": "object", "properties": {"a": {"type": "string", "enum": ("x",)}}}
    with pytest.raises(ToolSpecError):
        ToolSpec.from_any({"name": "h", "parameters": tup})
    ToolSpec.from_any({"name": "h", "parameters": {**tup, "properties": {"a": {"enum": ["x"]}}}})
