"""ToolBench / RapidAPI tool documents (ToolBench ``data/toolenv/tools/<Category>/<tool>.json``).

A document is ``{"tool_name", "tool_description", "standardized_name"?, "api_list":
[{"name", "description", "method", "required_parameters": [{"name", "type",
"description", "default"}], "optional_parameters": [...]}]}``; a file holds one
document, a list of them, or one per line. Each API becomes a function named as
ToolBench names it: ``<api>_for_<tool>`` with both parts standardized (lowercase, runs of
other characters -> ``_``, a leading digit prefixed ``get_``, keyword-like API names
prefixed ``is_``), the last 64 characters kept. RapidAPI types map to JSON schema
(STRING, NUMBER, BOOLEAN, ENUM, ARRAY, OBJECT, DATE, TIME, GEOPOINT); another type
rejects that API with the reason. Tool documents hold no dialogues.

ToolBench's data files hold two more record kinds, read here too:

- an instruction record (``instruction/G1_query.json``): ``{"query", "api_list":
  [{"tool_name", "api_name", "api_description", "required_parameters", ...}],
  "relevant APIs", "query_id"}``; its APIs become tools named as above (the record names
  the relevant APIs but not their arguments, so it yields no dialogue);
- an answer file (``answer/G1_answer/<id>_ChatGPT_DFS_woFilter_w2.json``):
  ``{"answer_generation": {"function", "train_messages", "finish_type", ...}, ...}``; its
  functions are the tools and the last ``train_messages`` list is the dialogue (OpenAI
  messages with the older ``function_call``). The pseudo-tool ``Finish`` ends it: its
  ``final_answer`` becomes the assistant's answer. Other assistant text is the model's
  thought (ToolBench shows the user only the final answer), so it is dropped, and so is
  the search's restart prompt (a later "user" message that is DFS control text, not the
  user's words). A trajectory that gave up or has no train_messages is rejected.
"""

from __future__ import annotations

import re
from typing import Any

from looptool.core.types import Message
from looptool.seed.importers.base import (
    RecordError,
    ToolOutcome,
    as_list,
    convert,
    object_schema,
    spec_of,
)
from looptool.seed.importers.chat import read_messages

_RAPIDAPI_TYPES = {
    "STRING": {"type": "string"},
    "NUMBER": {"type": "number"},
    "INTEGER": {"type": "integer"},
    "FLOAT": {"type": "number"},
    "BOOLEAN": {"type": "boolean"},
    "ENUM": {"type": "string"},
    "ARRAY": {"type": "array"},
    "LIST": {"type": "array"},
    "OBJECT": {"type": "object"},
    "DATE (YYYY-MM-DD)": {"type": "string", "format": "date"},
    "TIME (24-HOUR HH:MM)": {"type": "string"},
    "GEOPOINT (LATITUDE, LONGITUDE)": {"type": "string"},
}
_KEYWORDS = {"from", "class", "return", "false", "true", "id", "and"}


_FINISH = "Finish"
# DFS search control text ToolBench puts in a "user" message when it retries a branch
_RESTART = "This is not the first time you try this task"


def is_toolbench(record: Any) -> bool:
    return is_document(record) or is_query(record) or is_answer(record)


def is_document(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("api_list"), list)
        and ("tool_name" in record or "standardized_name" in record)
    )


def is_query(record: Any) -> bool:
    """An instruction record: a query and the APIs (each naming its tool) to answer it."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("api_list"), list)
        and "query" in record
        and not is_document(record)
    )


def is_answer(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("answer_generation"), dict)


def standardize(name: str) -> str:
    s = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", name)).strip("_").lower()
    return f"get_{s}" if s[:1].isdigit() else s


def _param(p: Any, where: str) -> tuple[str, dict]:
    if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
        raise RecordError(f"{where}: a parameter needs a 'name'")
    kind = str(p.get("type", "STRING")).strip().upper()
    if kind not in _RAPIDAPI_TYPES:
        raise RecordError(f"{where} {p['name']!r}: unknown RapidAPI type {p.get('type')!r}")
    schema = dict(_RAPIDAPI_TYPES[kind])
    if p.get("description"):
        schema["description"] = str(p["description"])
    if p.get("default") not in (None, ""):
        schema["examples"] = [p["default"]]
    return p["name"], schema


def api_spec(api: Any, where: str, tool: str, tool_desc: str):
    if not isinstance(api, dict) or not isinstance(api.get("name"), str) or not api["name"]:
        raise RecordError(f"{where}: an API needs a 'name'")
    pure = standardize(api["name"])
    pure = f"is_{pure}" if pure in _KEYWORDS else pure
    props, required = {}, []
    for key, is_req in (("required_parameters", True), ("optional_parameters", False)):
        for p in api.get(key) or []:
            name, schema = _param(p, f"{where} {key}")
            props[name] = schema
            if is_req:
                required.append(name)
    desc = str(api.get("description") or "").strip() or tool_desc
    body = object_schema(props, required)
    return spec_of(
        {"name": f"{pure}_for_{tool}"[-64:], "description": desc, "parameters": body}, where
    )


def parse(record: Any) -> tuple[list[ToolOutcome], list[Message] | None]:
    if is_query(record):
        return _query_tools(record), None
    if is_answer(record):
        return _answer(record["answer_generation"])
    if not is_document(record):
        raise RecordError(
            "not a ToolBench record (a tool document needs 'tool_name' and 'api_list', an "
            "instruction 'query' and 'api_list', an answer file 'answer_generation')"
        )
    tool = standardize(str(record.get("standardized_name") or record.get("tool_name") or ""))
    if not tool:
        raise RecordError("the tool has no name")
    desc = str(record.get("tool_description") or "").strip()
    apis = [(f"#{k}", a) for k, a in enumerate(record["api_list"])]
    return convert(apis, lambda a, w: api_spec(a, w, tool, desc)), None


def _query_tools(record: dict) -> list[ToolOutcome]:
    """The APIs of an instruction record, each as a tool document's API of its tool."""

    def to_spec(api: Any, where: str):
        if not isinstance(api, dict) or not str(api.get("tool_name") or "").strip():
            raise RecordError(f"{where}: an API needs its 'tool_name'")
        doc = dict(api, name=api.get("api_name"), description=api.get("api_description"))
        return api_spec(doc, where, standardize(str(api["tool_name"])), "")

    return convert([(f"#{k}", a) for k, a in enumerate(record["api_list"])], to_spec)


def _answer(ag: dict) -> tuple[list[ToolOutcome], list[Message]]:
    """An answer file's tools and its final trajectory (Finish -> the answer text)."""
    finish = ag.get("finish_type")
    runs = ag.get("train_messages")
    if not runs:
        raise RecordError(
            f"no train_messages (valid_data {ag.get('valid_data')!r}): the search kept no "
            "trajectory"
        )
    if finish != "give_answer":
        raise RecordError(f"finish_type {finish!r}: the trajectory gave up, it has no answer")
    raw = as_list(runs, "train_messages")[-1]  # the whole trajectory; earlier ones are steps
    messages, _ = read_messages(as_list(raw, "train_messages[-1]"))
    out: list[Message] = []
    for m in messages:
        if m.role == "user":
            if out and _RESTART in m.content:
                # DFS search control (what sibling branches tried), not the user's words:
                # the messages around it are one path of the tree, so the trajectory holds
                continue
            text = m.content.strip().removesuffix("Begin!").strip()
            out.append(m.model_copy(update={"content": text}))
        elif m.role == "assistant":
            if any(c.name == _FINISH for c in m.tool_calls):
                out.append(Message(role="assistant", content=_final_answer(m)))
            elif m.tool_calls:  # the text is the model's thought, not said to the user
                out.append(m.model_copy(update={"content": ""}))
            # an assistant message with text only is a thought as well: left out
        else:
            out.append(m)
    if not out or out[-1].role != "assistant" or out[-1].tool_calls:
        raise RecordError("the trajectory does not end with Finish's final answer")
    tools = [t for t in as_list(ag.get("function", []), "function") if not _is_finish(t)]
    return convert([(f"#{k}", t) for k, t in enumerate(tools)], spec_of), out


def _is_finish(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("name") == _FINISH


def _final_answer(m: Message) -> str:
    if len(m.tool_calls) != 1:
        raise RecordError("Finish together with other calls")
    args = m.tool_calls[0].arguments
    if args.get("return_type") != "give_answer":
        raise RecordError(f"Finish with return_type {args.get('return_type')!r}")
    answer = args.get("final_answer", "")
    if not isinstance(answer, str) or not answer.strip():
        raise RecordError("Finish without a final_answer")
    return answer.strip()
