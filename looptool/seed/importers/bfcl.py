"""BFCL question files (bfcl_eval/data/BFCL_v4_*.json): JSON lines ``{"id", "question":
[[message, ...]], "function": [doc, ...]}``, with their possible answers.

Answers are ``{"id", "ground_truth": [{name: {param: [acceptable values]}}]}`` lines,
read from the record itself or from the possible-answer file: ``answers`` in params, by
default ``possible_answer/<file name>`` next to the question file (BFCL's own layout).
The label takes the first acceptable value of each parameter; a first value of ``""``
(BFCL: "may be left out") leaves the parameter out. Without any answer file the docs are
imported as tools only. Single-turn entries only: multi-turn entries (a question per
turn, answers as call strings) are rejected with that reason. Careful: BFCL's own
questions in the seed pool leak evaluation items into training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looptool.core.types import Message, ToolCall
from looptool.seed.importers.base import (
    RecordError,
    ToolImportError,
    ToolOutcome,
    convert,
    read_records,
    spec_of,
)


def is_bfcl(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("function"), list | dict)
        and ("question" in record or "id" in record)
        and record.get("type") != "function"
    )


def is_answer(record: Any) -> bool:
    return isinstance(record, dict) and "ground_truth" in record and "function" not in record


def answers_path(path: Path, answers: str | None) -> Path | None:
    """The possible-answer file of a question file (None: there is none)."""
    if answers is not None:
        p = Path(answers)
        if not p.is_file():
            raise ToolImportError(f"{p}: BFCL possible-answer file not found")
        return p
    p = path.parent / "possible_answer" / path.name
    return p if p.is_file() else None


def load_answers(path: Path | None) -> dict[str, Any] | None:
    """id -> ground truth (None: no answer file)."""
    if path is None:
        return None
    records, _ = read_records(path)
    out = {}
    for r in records:
        if not is_answer(r.value):
            raise ToolImportError(
                f"{path}: line {r.line}: not a BFCL possible answer (needs 'id' and 'ground_truth')"
            )
        out[str(r.value.get("id"))] = r.value["ground_truth"]
    return out


def label_calls(truth: Any) -> list[ToolCall]:
    """Possible answers -> the label: the first acceptable value of each parameter."""
    if not isinstance(truth, list) or not truth:
        raise RecordError("ground_truth must be a non-empty list of calls")
    calls = []
    for k, entry in enumerate(truth):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise RecordError(f"ground_truth[{k}] must be {{name: {{param: [values]}}}}")
        ((name, params),) = entry.items()
        if not isinstance(params, dict):
            raise RecordError(f"ground_truth[{k}] {name!r}: parameters must be an object")
        args = {}
        for p, values in params.items():
            if not isinstance(values, list) or not values:
                raise RecordError(f"ground_truth[{k}] {name}.{p}: no acceptable value")
            if values[0] != "":
                args[p] = values[0]
        calls.append(ToolCall(name=name, arguments=args))
    return calls


def parse(
    record: Any, answers: dict[str, Any] | None
) -> tuple[list[ToolOutcome], list[Message] | None]:
    if not is_bfcl(record):
        raise RecordError("not a BFCL entry (needs 'id' and a 'function' list of docs)")
    docs = record["function"]
    if not isinstance(docs, list):
        raise RecordError("BFCL entry 'function' must be a list of docs")
    if not docs:
        raise RecordError("BFCL entry has no function docs")
    outcomes = convert([(f"#{k}", d) for k, d in enumerate(docs)], spec_of)
    truth = record.get("ground_truth")
    if truth is None and answers is None:
        return outcomes, None  # tools only
    rid = str(record.get("id"))
    if truth is None:
        truth = answers.get(rid) if answers else None
        if truth is None:
            raise RecordError(f"no possible answer for id {rid!r}")
    question = record.get("question")
    if not isinstance(question, list) or not question:
        raise RecordError("'question' must be a non-empty list of turns")
    if len(question) > 1:
        raise RecordError(
            f"multi-turn entry ({len(question)} turns): only single-turn entries are imported"
        )
    turn = question[0] if isinstance(question[0], list) else question
    messages = []
    for i, m in enumerate(turn):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise RecordError(f"question message {i}: expected {{role, content}}")
        if m.get("role") == "system":
            continue
        role = "user" if m.get("role") == "user" else m.get("role")
        if role not in ("user", "assistant"):
            raise RecordError(f"question message {i}: unexpected role {m.get('role')!r}")
        messages.append(Message(role=role, content=m["content"]))
    messages.append(Message(role="assistant", tool_calls=label_calls(truth)))
    return outcomes, messages
