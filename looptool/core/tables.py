"""The one table-schema module: Arrow schemas of every stored table, and row helpers.

Tools, context and labels are stored as canonical JSON strings (DESIGN §2): nested
Arrow structs would merge heterogeneous argument keys and null-fill them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa

from looptool.core.match import NO_CALL_KINDS, no_call_kind
from looptool.core.types import Label, Message, Sample, ToolSpec, canonical_json

# Columns every stored sample carries (seed samples, dataset versions, expansions).
SAMPLE_FIELDS: list[pa.Field] = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("tools", pa.string(), nullable=False),  # canonical JSON list of tool specs
    pa.field("context", pa.string(), nullable=False),  # canonical JSON list of messages
    pa.field("label", pa.string(), nullable=False),  # canonical JSON {"calls": [...], "text"?}
    pa.field("label_hash", pa.string(), nullable=False),
    pa.field("label_rev", pa.int32(), nullable=False),
    # single | parallel | multi_step (calls) | clarify | irrelevant (no call; the label's kind)
    pa.field("kind", pa.string(), nullable=False),
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
        # ES | EE | HPPL | SEED_NEW | SEED (D_1) | MASTERED (ablation no_hppl)
        pa.field("split", pa.string(), nullable=False),
        pa.field("iter", pa.int32(), nullable=False),
        # 0 = first occurrence; >0 = a deliberate repeat (es_repeat, shortfall fill)
        pa.field("copy", pa.int32()),
    ]
)

# Cumulative set of seed samples used in training so far (data/iter_j/seed_used.parquet).
SEED_USED = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("used_iter", pa.int32(), nullable=False),  # the D_j that first used it
    ]
)

# The run's finite seed pool (data/iter_1/seed_pool.parquet): the training seed samples D_1,
# Seed-new and the static baseline may draw, in the seeded order they are drawn in.
SEED_POOL = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("pool_rank", pa.int32(), nullable=False),  # 0 = first drawn (D_1's head)
    ]
)

PROBE = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # the label's kind (SAMPLE_FIELDS)
        pa.field("raw_text", pa.string(), nullable=False),
        pa.field("think", pa.string()),
        pa.field("prediction", pa.string()),  # canonical label JSON; null on parse error
        pa.field("parse_error", pa.string()),
        pa.field("match", pa.bool_(), nullable=False),
        pa.field("match_reason", pa.string(), nullable=False),
        pa.field("ppl", pa.float64()),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("hppl", pa.bool_(), nullable=False),
        # "engine_failed: <reason>" when the policy could not answer (match_reason
        # engine_failed) or its PPL could not be scored (ppl null); null otherwise
        pa.field("engine_error", pa.string()),
    ]
)

VERDICT_VALUES = ("PRED_WRONG", "LABEL_WRONG", "BOTH_CORRECT", "BOTH_WRONG", "UNPARSED")

VERDICTS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),  # equiv | rules | llm | engine
        pa.field("reason", pa.string(), nullable=False),
        pa.field("analysis", pa.string()),
        pa.field("correct_approach", pa.string()),
        pa.field("judge_model", pa.string()),
        pa.field("response_order", pa.string()),  # label_first | pred_first | both
        pa.field("raw_judge", pa.string()),
        pa.field("label_before", pa.string(), nullable=False),
        pa.field("label_after", pa.string()),  # set when LABEL_WRONG replaced the label
        pa.field("label_hash_after", pa.string()),
        pa.field("kind_after", pa.string()),  # the new label's kind (a relabel may change it)
        pa.field("ppl", pa.float64()),  # the probe's PPL (decides BOTH_CORRECT -> HPPL)
        pa.field("outcome", pa.string(), nullable=False),  # MR | LR | HPPL | KEPT_OUT | DROPPED
    ]
)

EXPANSIONS = pa.schema(
    SAMPLE_FIELDS
    + [
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("child_index", pa.int32(), nullable=False),
        pa.field("accepted", pa.bool_(), nullable=False),
        # parse | rules | dedup | heldout_dup | llm | engine_failed
        pa.field("reject_tier", pa.string()),
        pa.field("reject_reason", pa.string()),
        pa.field("raw_text", pa.string()),  # the generator's output, for inspection
    ]
)

# Seed construction (looptool.seed): the API pool and simulated / verified dialogues.
# Samples point back here through `dialogue_id`; `provenance` names each tool's tree paths.
APIS = pa.schema(
    [
        pa.field("api_id", pa.string(), nullable=False),  # content hash of the spec
        pa.field("name", pa.string(), nullable=False),
        pa.field("spec", pa.string(), nullable=False),  # canonical JSON ToolSpec
        pa.field("returns", pa.string()),  # JSON schema of results, when known
        pa.field("hints", pa.string()),  # JSON: tree vocabulary for templated values/phrasing
        pa.field("domain", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # synth | import
        pa.field("context_path", pa.string()),  # domain/category/leaf (synth)
        pa.field("constraint_path", pa.string()),  # constraint-tree path (synth)
        pa.field("constraints", pa.string()),  # JSON of the merged path constraints
        pa.field("draw", pa.int32()),  # synthesis draw index (synth)
        pa.field("origin_ref", pa.string()),  # file#entry (import)
    ]
)

DIALOGUES = pa.schema(
    [
        pa.field("dialogue_id", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("tools", pa.string(), nullable=False),  # canonical JSON list of tool specs
        pa.field("provenance", pa.string(), nullable=False),  # JSON: per tool api_id + tree paths
        pa.field("turn_kinds", pa.string(), nullable=False),  # JSON list: the plan's (drawn) kinds
        pa.field("plan", pa.string(), nullable=False),  # JSON plan
        pa.field("messages", pa.string(), nullable=False),  # JSON list of messages
        pa.field("acts", pa.string(), nullable=False),  # JSON: per message, the assistant act
        pa.field("n_messages", pa.int32(), nullable=False),
        pa.field("n_calls", pa.int32(), nullable=False),
        pa.field("agents", pa.string(), nullable=False),  # JSON: agent -> backend/model
        pa.field("verification", pa.string()),  # JSON tier results (verified dialogues)
    ]
)

# Label noise injected into D_seed (seed.label_noise): the clean label is kept here.
LABEL_NOISE = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("noise_kind", pa.string(), nullable=False),
        pa.field("schema_valid", pa.bool_(), nullable=False),  # noisy label passes the rules
        pa.field("clean_label", pa.string(), nullable=False),
        pa.field("noisy_label", pa.string(), nullable=False),
        pa.field("clean_label_hash", pa.string(), nullable=False),
        pa.field("noisy_label_hash", pa.string(), nullable=False),
        pa.field("dialogue_id", pa.string()),
        pa.field("step", pa.int32()),
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

# eval@j, one row per evaluated item (held-out sample or BFCL entry).
EVAL_ITEMS = pa.schema(
    [
        pa.field("iter", pa.int32(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),  # heldout | bfcl
        pa.field("item_id", pa.string(), nullable=False),  # sample_id or BFCL id
        pa.field("category", pa.string(), nullable=False),  # sample kind or BFCL category
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # "match"/"valid" or the failure rule
        pa.field("raw_text", pa.string()),  # the completion (or the error for engine_error/bad_*)
    ]
)


def sample_kind(sample: Sample, context_has_calls: bool | None = None) -> str:
    """single | parallel | multi_step | clarify | irrelevant (multi_step = earlier calls in
    context; a no-call sample's kind is its label's :attr:`Label.kind`)."""
    if sample.label.is_no_call:
        return sample.label.kind or no_call_kind(sample.label.text)
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


def label_from_json(text: str, kind: str | None = None) -> Label:
    """A stored label; ``kind`` (the row's ``kind`` column) is the no-call kind of a label
    stored before labels carried one (without either, its text is read)."""
    raw = json.loads(text)
    if (
        kind in NO_CALL_KINDS
        and isinstance(raw, dict)
        and not raw.get("calls")
        and raw.get("kind") is None
    ):
        raw = {**raw, "kind": kind}
    return Label.model_validate(raw)


def sample_from_row(row: dict) -> Sample:
    """Rebuild a Sample from a stored row (tools/context/label JSON columns)."""
    return Sample(
        tools=[ToolSpec.model_validate(t) for t in json.loads(row["tools"])],
        context=[Message.model_validate(m) for m in json.loads(row["context"])],
        label=label_from_json(row["label"], row.get("kind")),
    )


def rows_to_table(rows: Iterable[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema`` (missing nullable columns become null)."""
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
