"""The one table-schema module: Arrow schemas of every stored table, and row helpers.

Tools, context and labels are stored as canonical JSON strings (DESIGN §2): nested
Arrow structs would merge heterogeneous argument keys and null-fill them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa

from looptool.core.types import Label, Message, Sample, ToolSpec, canonical_json

# Columns every stored sample carries (seed samples, dataset versions, expansions).
SAMPLE_FIELDS: list[pa.Field] = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("tools", pa.string(), nullable=False),  # canonical JSON list of tool specs
    pa.field("context", pa.string(), nullable=False),  # canonical JSON list of messages
    pa.field("label", pa.string(), nullable=False),  # canonical JSON {"calls": [...], "text"?}
    pa.field("label_hash", pa.string(), nullable=False),
    pa.field("label_rev", pa.int32(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # single | parallel | multi_step | no_call
    pa.field("origin", pa.string(), nullable=False),  # seed | edde | relabel
    pa.field("born_iter", pa.int32(), nullable=False),  # 0 for seed
    pa.field("parent_id", pa.string()),
    pa.field("dialogue_id", pa.string()),
    pa.field("step", pa.int32()),
]
SAMPLES = pa.schema(SAMPLE_FIELDS)

# D_j: samples plus the split that put them there.
DATASET = pa.schema(
    SAMPLE_FIELDS
    + [
        pa.field("split", pa.string(), nullable=False),  # ES | EE | HPPL | SEED_NEW | SEED
        pa.field("iter", pa.int32(), nullable=False),
    ]
)

PROBE = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("raw_text", pa.string(), nullable=False),
        pa.field("think", pa.string()),
        pa.field("prediction", pa.string()),  # canonical label JSON; null on parse error
        pa.field("parse_error", pa.string()),
        pa.field("match", pa.bool_(), nullable=False),
        pa.field("match_reason", pa.string(), nullable=False),
        pa.field("ppl", pa.float64()),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("hppl", pa.bool_(), nullable=False),
    ]
)

VERDICT_VALUES = ("PRED_WRONG", "LABEL_WRONG", "BOTH_CORRECT", "BOTH_WRONG", "UNPARSED")

VERDICTS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),  # equiv | rules | llm
        pa.field("reason", pa.string(), nullable=False),
        pa.field("analysis", pa.string()),
        pa.field("correct_approach", pa.string()),
        pa.field("judge_model", pa.string()),
        pa.field("response_order", pa.string()),  # label_first | pred_first | both
        pa.field("raw_judge", pa.string()),
        pa.field("label_before", pa.string(), nullable=False),
        pa.field("label_after", pa.string()),  # set when LABEL_WRONG replaced the label
        pa.field("outcome", pa.string(), nullable=False),  # MR | LR | HPPL | KEPT_OUT | DROPPED
    ]
)

EXPANSIONS = pa.schema(
    SAMPLE_FIELDS
    + [
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("accepted", pa.bool_(), nullable=False),
        pa.field("reject_tier", pa.string()),
        pa.field("reject_reason", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),  # parse | rules | llm | dedup | ...
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.string()),  # the rejected item as JSON, for inspection
    ]
)


def sample_kind(sample: Sample, context_has_calls: bool | None = None) -> str:
    """single | parallel | multi_step | no_call (multi_step = earlier calls in context)."""
    if sample.label.is_no_call:
        return "no_call"
    if context_has_calls is None:
        context_has_calls = any(m.tool_calls for m in sample.context)
    if context_has_calls:
        return "multi_step"
    return "parallel" if len(sample.label.calls) > 1 else "single"


def sample_to_row(
    sample: Sample,
    *,
    origin: str = "seed",
    born_iter: int = 0,
    label_rev: int = 0,
    parent_id: str | None = None,
    dialogue_id: str | None = None,
    step: int | None = None,
    kind: str | None = None,
) -> dict:
    """A dict matching :data:`SAMPLES` for one sample."""
    return {
        "sample_id": sample.sample_id,
        "tools": canonical_json(sample.tools_json()),
        "context": canonical_json(sample.context_json()),
        "label": canonical_json(sample.label.to_json()),
        "label_hash": sample.label_hash,
        "label_rev": label_rev,
        "kind": kind or sample_kind(sample),
        "origin": origin,
        "born_iter": born_iter,
        "parent_id": parent_id,
        "dialogue_id": dialogue_id,
        "step": step,
    }


def label_from_json(text: str) -> Label:
    return Label.model_validate(json.loads(text))


def sample_from_row(row: dict) -> Sample:
    """Rebuild a Sample from a stored row (tools/context/label JSON columns)."""
    return Sample(
        tools=[ToolSpec.model_validate(t) for t in json.loads(row["tools"])],
        context=[Message.model_validate(m) for m in json.loads(row["context"])],
        label=label_from_json(row["label"]),
    )


def rows_to_table(rows: Iterable[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema`` (missing nullable columns become null)."""
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
