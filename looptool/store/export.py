"""Export a dataset version for training elsewhere.

Formats:
- ``openai``: JSONL, one ``{"messages": [...], "tools": [...]}`` per sample, the OpenAI
  chat fine-tuning shape. Messages are the policy prompt (system prompt of
  looptool.core.prompting + context) followed by the label as the assistant turn (its
  ``tool_calls``, or its text for a no-call label). Calls get ids ``call_<k>`` and tool
  results the matching ``tool_call_id``; arguments are JSON strings (``arguments="object"``
  keeps dicts, for chat templates that serialize them themselves). Context assistant
  turns carry ``weight: 0`` and the label turn ``weight: 1``, so only the label is learned.
- ``sharegpt``: JSONL in the LLaMA-Factory function-calling layout: ``conversations`` of
  human / gpt / function_call / observation turns, ``system`` and ``tools`` (JSON text).
  Parallel calls become one function_call turn holding a JSON list; consecutive tool
  results one observation holding a JSON list. Turns must alternate, so a gap (e.g. a
  user message right after a tool result) gets an empty turn of the other side; text
  beside calls in a context assistant turn has no place in a function_call turn (use
  ``openai`` to keep it).
- ``parquet``: the version's rows plus ``messages``/``tools_openai`` (JSON) and
  ``completion`` (the label in the policy's output text format).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from looptool.core.codec import render_label
from looptool.core.prompting import policy_messages, policy_tools
from looptool.core.tables import label_from_json, sample_from_row
from looptool.core.types import Label, Sample
from looptool.store.io import atomic_path, write_parquet_atomic
from looptool.store.views import Layout, Version, resolve_version

Format = Literal["openai", "sharegpt", "parquet"]
FORMATS: tuple[str, ...] = ("openai", "sharegpt", "parquet")


class ExportError(ValueError):
    """A row that cannot be converted; the message names the file and row."""


def _link_call_ids(messages: list[dict], args_as: str) -> list[dict]:
    """Give every call an id and every tool result the id of the call it answers."""
    out: list[dict] = []
    pending: list[str] = []  # ids of calls not yet answered, in order
    k = 0
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c["function"])
                if args_as == "string":
                    fn["arguments"] = json.dumps(
                        fn.get("arguments", {}), ensure_ascii=False, sort_keys=True
                    )
                cid = f"call_{k}"
                k += 1
                pending.append(cid)
                calls.append({"id": cid, "type": "function", "function": fn})
            m["tool_calls"] = calls
        if m["role"] == "assistant":
            # Context turns are prompt, not target: weight 0 keeps them out of the loss.
            m["weight"] = 0
        elif m["role"] == "tool" and pending:
            m["tool_call_id"] = pending.pop(0)
            m.pop("name", None)  # the OpenAI format identifies results by tool_call_id
        out.append(m)
    out[-1]["weight"] = 1  # the label turn
    return out


def openai_record(sample: Sample, label: Label, date: str, arguments: str = "string") -> dict:
    """One OpenAI fine-tuning record: prompt messages + the label as the assistant turn."""
    assistant: dict = {"role": "assistant", "content": "" if label.calls else (label.text or "")}
    if label.calls:
        assistant["tool_calls"] = [c.to_openai() for c in label.calls]
    messages = _link_call_ids([*policy_messages(sample, date), assistant], arguments)
    return {"messages": messages, "tools": policy_tools(sample)}


def sharegpt_record(sample: Sample, label: Label, date: str) -> dict:
    """One LLaMA-Factory-style sharegpt record."""
    msgs = policy_messages(sample, date)
    system = msgs[0]["content"]
    turns: list[dict] = []

    def calls_value(calls: list[dict]) -> str:
        objs = [
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls
        ]
        return json.dumps(objs[0] if len(objs) == 1 else objs, ensure_ascii=False, sort_keys=True)

    tool_buf: list[str] = []
    user_side = ("human", "observation")

    def add(role: str, value: str) -> None:
        # Turns alternate user side / assistant side, user first; fill gaps with empty turns.
        prev_user = turns[-1]["from"] in user_side if turns else False
        if prev_user == (role in user_side):
            turns.append({"from": "gpt" if role in user_side else "human", "value": ""})
        turns.append({"from": role, "value": value})

    def flush_tools() -> None:
        if tool_buf:
            value = tool_buf[0] if len(tool_buf) == 1 else json.dumps(tool_buf, ensure_ascii=False)
            add("observation", value)
            tool_buf.clear()

    for m in msgs[1:]:
        if m["role"] == "tool":
            tool_buf.append(m.get("content", ""))
            continue
        flush_tools()
        if m["role"] == "user":
            add("human", m.get("content", ""))
        elif m.get("tool_calls"):
            add("function_call", calls_value(m["tool_calls"]))
        else:
            add("gpt", m.get("content", ""))
    flush_tools()
    if label.calls:
        add("function_call", calls_value([c.to_openai() for c in label.calls]))
    else:
        add("gpt", label.text or "")
    tools = json.dumps([t.to_json() for t in sample.tools], ensure_ascii=False, sort_keys=True)
    return {"conversations": turns, "system": system, "tools": tools}


def version_rows(version: Version) -> pa.Table:
    return pq.read_table(version.path)


def version_sample(row: dict, version: Version, i: int) -> tuple[Sample, Label]:
    try:
        return sample_from_row(row), label_from_json(row["label"])
    except (ValueError, KeyError, TypeError) as exc:  # pydantic errors are ValueErrors
        raise ExportError(
            f"{version.path}: row {i} (sample {row.get('sample_id')}): {exc}"
        ) from None


def export_version(
    version: str | Version,
    fmt: Format,
    out: str | Path,
    root: str | Path = ".",
    date: str | None = None,
    arguments: str = "string",
) -> int:
    """Write ``version`` to ``out`` in ``fmt``; returns the number of records written.

    ``date`` (for the system prompt) defaults to params.yaml ``project.date`` at ``root``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if arguments not in ("string", "object"):
        raise ExportError(f"arguments must be 'string' or 'object', got {arguments!r}")
    layout = Layout.at(root)
    v = version if isinstance(version, Version) else resolve_version(layout, version)
    date = date or project_date(layout.root)
    table = version_rows(v)
    if fmt == "parquet":
        messages, tools, completions = [], [], []
        for i, row in enumerate(table.to_pylist()):
            sample, label = version_sample(row, v, i)
            messages.append(
                json.dumps(policy_messages(sample, date), ensure_ascii=False, sort_keys=True)
            )
            tools.append(json.dumps(policy_tools(sample), ensure_ascii=False, sort_keys=True))
            completions.append(render_label(label))
        table = table.append_column("messages", pa.array(messages, pa.string()))
        table = table.append_column("tools_openai", pa.array(tools, pa.string()))
        table = table.append_column("completion", pa.array(completions, pa.string()))
        write_parquet_atomic(out, table)
        return table.num_rows
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for i, row in enumerate(table.to_pylist()):
            sample, label = version_sample(row, v, i)
            rec = (
                openai_record(sample, label, date, arguments)
                if fmt == "openai"
                else sharegpt_record(sample, label, date)
            )
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def project_date(root: Path) -> str:
    from looptool.params import load_params
    from looptool.params.project import ProjectParams

    params_file = root / "params.yaml"
    if params_file.is_file():
        return load_params(params_file).project.date
    return ProjectParams().date
