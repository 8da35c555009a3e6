"""Benchmark: importing a large tool / dialogue file (issue 27, item 12).

Writes (not timed) an OpenAI-style JSON-lines file of about ``--mb`` MB: chats with their
tools (new names, repeats of one shared tool, same-named variants), bare tool specs (some
duplicate names: dedup rejects), records whose tool has a bad schema (rejects that carry
the whole record) and lines that are not JSON. Then runs, each as its own process:

    preview    looptool seed import FILE            (the dry run; output to /dev/null)
    seed_apis  python -m stages.seed_apis           (n_draws 0, the file as the one import)

and prints one table: file size, records, wall time, peak RSS (the child's ru_maxrss),
records/s.

    .venv/bin/python -m bench.import_large [--mb 200] [--dir DIR] [--only preview|seed_apis]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAD = (
    "Free text that imported datasets carry in their tool and parameter descriptions, "
    "repeated to give each record a realistic size. "
) * 4


def _tool(name: str, i: int, ptype: str = "string") -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Look up item {i} in the catalogue. {PAD}",
            "parameters": {
                "type": "object",
                "properties": {
                    "item_id": {"type": ptype, "description": f"The item's id. {PAD[:200]}"},
                    "region": {"type": "string", "enum": ["eu", "us", "apac"]},
                },
                "required": ["item_id"],
            },
        },
    }


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def record(i: int) -> str:
    """Line ``i`` of the generated file (with its newline)."""
    if i % 50 == 49:
        return '{"messages": [oops not json\n'
    if i % 10 == 9:  # a bare tool spec; every other one reuses an earlier name (dedup)
        name = f"bare_tool_{i - 10}" if i % 20 == 19 else f"bare_tool_{i}"
        return json.dumps({**_tool(name, i)["function"], "description": f"Bare {i}. {PAD}"}) + "\n"
    name = f"lookup_item_{i}" if i % 3 or i == 0 else f"lookup_item_{i - 1}"  # a variant
    ptype = "strng" if i % 40 == 7 else "string"  # a bad schema: the record is a reject
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Look up item A-{i} for me, and the weather in Oslo."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": name, "arguments": json.dumps({"item_id": f"A-{i}"})}},
                {"id": "c2", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"item_id": f"A-{i}", "stock": i % 17, "note": PAD[:300]})},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temp_c": 4}'},
        {"role": "assistant", "content": f"Item A-{i} has {i % 17} in stock; Oslo is 4 C."},
    ]  # fmt: skip
    return json.dumps({"messages": messages, "tools": [_tool(name, i, ptype), WEATHER]}) + "\n"


def write_file(path: Path, mb: float) -> int:
    """Write lines until the file holds ``mb`` MB; the number of JSON records written."""
    target = int(mb * 1_000_000)
    size = n = 0
    with open(path, "w", encoding="utf-8") as fh:
        while size < target:
            chunk = "".join(record(i) for i in range(n, n + 1000))
            fh.write(chunk)
            size += len(chunk.encode())
            n += 1000
    return n - n // 50  # every 50th line is not JSON


def _measure(cmd: list[str], cwd: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit code) of one child process."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=null, stderr=subprocess.PIPE)
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return wall, usage.ru_maxrss * 1024, proc.returncode


def _stage_params(tmp: Path, data: Path) -> Path:
    raw = {
        "project": {"seed": 0, "cache_dir": str(tmp / "cache")},
        "engines": {"generator": {"backend": "template"}},
        "iterations": {"1": {"j": 1, "prev": 0, "next": 2}},
        "seed": {
            "trees": {
                "context": str(ROOT / "data/trees/context_tree.yaml"),
                "constraint": str(ROOT / "data/trees/constraint_tree.yaml"),
            },
            "apis": {"n_draws": 0, "imports": [{"path": str(data)}]},
        },
    }
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.import_large",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--mb", type=float, default=200.0, help="size of the generated file")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    ap.add_argument("--only", choices=("preview", "seed_apis"), default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="looptool-bench-import-") as scratch:
        work = args.dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "big_chats.jsonl"
        n = write_file(data, args.mb)
        size = data.stat().st_size
        py = sys.executable
        runs = {
            "preview": [py, "-m", "looptool.cli", "seed", "import", str(data)],
            "seed_apis": [py, "-m", "stages.seed_apis", "--params",
                          str(_stage_params(work, data)), "--out", str(work / "seed")],
        }  # fmt: skip
        print(f"{'run':<10} {'file MB':>8} {'records':>8} {'wall s':>8} {'peak RSS MB':>12} "
              f"{'records/s':>10}")  # fmt: skip
        for name, cmd in runs.items():
            if args.only and name != args.only:
                continue
            wall, rss, rc = _measure(cmd, ROOT)
            flag = "" if rc == 0 else f"  (exit {rc})"
            print(f"{name:<10} {size / 1e6:>8.1f} {n:>8} {wall:>8.1f} {rss / 2**20:>12.0f} "
                  f"{n / wall:>10.0f}{flag}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
