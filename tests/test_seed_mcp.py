"""MCP servers as tool sources: `looptool seed import` of a tools/list result and
`--mcp "CMD ARGS"` against a stdio server written here with the official SDK (no network)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.cli import main
from looptool.seed.imports import import_file

needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("mcp") is None, reason="the mcp extra is not installed"
)

# mcp 2.x renamed FastMCP to MCPServer (mcp.server.mcpserver); same decorator API.
SERVER = '''
from __future__ import annotations

from pydantic import BaseModel
from mcp.server.mcpserver import MCPServer


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Point(BaseModel):
    x: float
    y: float


class Weather(BaseModel):
    temp: float
    summary: str


app = MCPServer("looptool-test")


@app.tool(description="Weather for a city.")
def get_weather(city: str, days: int = 1) -> Weather:
    return Weather(temp=20.0, summary="sunny")


@app.tool()
def distance(a: Point, b: Point) -> float:
    """Distance between two points."""
    return 0.0


@app.tool()
def walk_tree(root: Node) -> str:
    """Walk a tree of nodes."""
    return root.name


if __name__ == "__main__":
    app.run()
'''


def _server(tmp_path: Path, body: str = SERVER) -> str:
    script = tmp_path / "server.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


def _run(*args: str):
    return CliRunner().invoke(main, ["seed", "import", *args])


@needs_sdk
def test_mcp_server_tools_are_listed_and_imported(tmp_path: Path):
    saved = tmp_path / "server_tools.json"
    res = _run("--mcp", _server(tmp_path), "--save", str(saved), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[0])
    assert [t["name"] for t in out["tools"]] == ["get_weather", "distance"]
    assert out["tools"][0]["parameters"] == ["city", "days"]
    [reject] = out["rejects"]
    assert "walk_tree" in reject["reason"] and "recursive $ref" in reject["reason"]
    # the saved tools/list result is what seed.apis.imports reads (format auto-detected)
    assert "tools" in json.loads(saved.read_text())
    f = import_file(saved)
    assert f.format == "mcp"
    apis = {a["name"]: a for a in f.apis}
    assert set(apis) == {"get_weather", "distance"}
    weather = json.loads(apis["get_weather"]["spec"])
    assert weather["description"] == "Weather for a city."
    assert weather["parameters"]["required"] == ["city"]
    returns = json.loads(apis["get_weather"]["returns"])  # outputSchema kept
    assert set(returns["properties"]) == {"temp", "summary"}
    dist = json.loads(apis["distance"]["spec"])
    assert dist["description"] == "Distance between two points."
    # pydantic's $defs / $ref inlined: each argument is the Point object schema
    assert "$defs" not in dist["parameters"]
    assert dist["parameters"]["properties"]["a"]["properties"] == {
        "x": {"title": "X", "type": "number"},
        "y": {"title": "Y", "type": "number"},
    }
    assert [r.reason for r in f.rejects if "walk_tree" in r.reason]
    assert all(a["source"] == "import" for a in f.apis)


def test_tools_list_file_jsonrpc_envelope_and_rejects(tmp_path: Path):
    tools = [
        {"name": "search", "title": "Search the web", "inputSchema": {
            "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
        {"name": "as_array", "description": "x", "inputSchema": {"type": "array"}},
        {"name": "bad_type", "description": "x", "inputSchema": {
            "type": "object", "properties": {"n": {"type": "strng"}}}},
        {"name": "remote", "description": "x", "inputSchema": {
            "type": "object", "properties": {"p": {"$ref": "https://example.org/p.json"}}}},
    ]  # fmt: skip
    page1 = {"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "2"}}
    page2 = {"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "bad cursor"}}
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps(page1) + "\n" + json.dumps(page2) + "\n")
    res = _run(str(path))
    assert res.exit_code == 0, res.output
    assert "format mcp" in res.output and "search(q)" in res.output
    f = import_file(path)
    assert [a["name"] for a in f.apis] == ["search"]
    assert json.loads(f.apis[0]["spec"])["description"] == "Search the web"  # title
    reasons = {r.ref: r.reason for r in f.rejects}
    assert "object schema" in reasons["list.jsonl:1#1"]
    assert "unknown type 'strng'" in reasons["list.jsonl:1#2"]
    assert "not a local definition" in reasons["list.jsonl:1#3"]
    assert (
        "server answered an error" in reasons["list.jsonl:2"]
        and "bad cursor" in (reasons["list.jsonl:2"])
    )
    # a bare result {"tools": [...]} too
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"tools": tools[:1]}))
    assert [a["name"] for a in import_file(bare).apis] == ["search"]


def _one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@needs_sdk
def test_crashing_server_one_line(tmp_path: Path):
    body = "import sys\nprint('config missing: API_KEY', file=sys.stderr)\nsys.exit(3)\n"
    t0 = time.monotonic()
    res = _run("--mcp", _server(tmp_path, body), "--timeout", "20")
    _one_line_error(res, "exited or closed stdout before answering", "config missing: API_KEY")
    assert time.monotonic() - t0 < 20


@needs_sdk
def test_hanging_server_times_out_with_one_line(tmp_path: Path):
    body = "import time\ntime.sleep(600)\n"
    t0 = time.monotonic()
    res = _run("--mcp", _server(tmp_path, body), "--timeout", "3")
    _one_line_error(res, "no tools/list answer within 3 s")
    assert time.monotonic() - t0 < 3 + 20  # the timeout, then the SDK stops the process


@needs_sdk
def test_missing_command_and_usage(tmp_path: Path):
    _one_line_error(_run("--mcp", str(tmp_path / "no-such-server")), "cannot start")
    res = _run()
    assert res.exit_code == 2 and "either FILE or --mcp" in res.output
    res = _run(str(tmp_path / "x.json"), "--save", str(tmp_path / "y.json"))
    assert res.exit_code == 2 and "--save needs --mcp" in res.output
    # --save goes through the output guard, before the server is started
    (tmp_path / "exists.json").write_text("{}")
    res = _run("--mcp", "never-started", "--save", str(tmp_path / "exists.json"))
    _one_line_error(res, "already exists; pass --force")
