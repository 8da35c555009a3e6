"""Verified dialogues -> samples (D_seed), split into train / held-out by dialogue (or by
tool: held-out samples call functions training never offers).

One sample per assistant step: a tool-call step (parallel calls kept together) or a
no-call step of a sampled act (clarification, out-of-scope refusal; final answers only
if configured). T = the dialogue's tools, c_t = every message before the step, label =
the step. Steps after tool results that mention an error are kept like any other.
Each row keeps ``dialogue_id`` and ``step`` (the assistant message's index in the
dialogue, = len(context)); tree provenance is in dialogues.parquet's ``provenance``.
"""

from __future__ import annotations

import json
import random
from collections import Counter

from looptool.core.match import NO_CALL_KINDS, no_call_kind
from looptool.core.rules import check_calls
from looptool.core.tables import sample_to_row
from looptool.core.types import Label, Message, Sample, ToolSpec, canonical_json


def dialogue_samples(row: dict, no_call_acts: set[str]) -> list[tuple[Sample, int, str]]:
    """(sample, message index, act) for each sampled assistant step of one dialogue."""
    tools = [ToolSpec.model_validate(t) for t in json.loads(row["tools"])]
    messages = [Message.model_validate(m) for m in json.loads(row["messages"])]
    out = []
    for i, act in enumerate(json.loads(row["acts"])):
        if not act:
            continue
        kind = act["act"]
        if kind == "call":
            label = Label(calls=list(messages[i].tool_calls))
        elif kind in no_call_acts:
            # a clarification or refusal carries its act as its kind (a final answer's
            # kind is read from its text)
            label = Label(text=messages[i].content, kind=kind if kind in NO_CALL_KINDS else None)
        else:
            continue
        out.append((Sample(tools=tools, context=messages[:i], label=label), i, kind))
    return out


def heldout_dialogues(dialogue_ids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded, exact-size held-out set of dialogues (round(fraction * n))."""
    ids = sorted(dialogue_ids)
    random.Random(f"seed-split:{seed}").shuffle(ids)
    return set(ids[: round(fraction * len(ids))])


def _tool_names(d: dict) -> set[str]:
    return {t["name"] for t in json.loads(d["tools"])}


def heldout_by_tool(dialogues: list[dict], fraction: float, seed: int) -> set[str]:
    """Held-out dialogues for ``seed.heldout_by: tool``: functions drawn in a seeded order
    are held out until the dialogues offering any of them reach round(fraction * n);
    those dialogues are held out, so training never offers a held-out function."""
    tools = {d["dialogue_id"]: _tool_names(d) for d in dialogues}
    names = sorted(set().union(*tools.values())) if tools else []
    random.Random(f"seed-split-tools:{seed}").shuffle(names)
    target = round(fraction * len(dialogues))
    held: set[str] = set()
    for name in names:
        if len(held) >= target:
            break
        held |= {d for d, ts in tools.items() if name in ts}
    return held


def build_samples(
    dialogues: list[dict],
    heldout_fraction: float,
    seed: int,
    no_call_acts: set[str],
    heldout_by: str = "dialogue",
    seen_ids: dict[str, str] | None = None,
) -> tuple[list[dict], list[dict], list[dict], dict[str, int]]:
    """(train rows, held-out rows, reject rows, kept samples per act); SAMPLES rows in
    dialogue order. ``heldout_by``: ``dialogue`` (a seeded share of the dialogues) or
    ``tool`` (:func:`heldout_by_tool`; a held-out sample that calls a function training
    also offers becomes a reject row of tier ``split``). ``seen_ids`` (sample id -> the
    item that first had it) carries the dedup across calls (dialogues fed in parts)."""
    if heldout_by == "tool":
        held = heldout_by_tool(dialogues, heldout_fraction, seed)
        trained_tools = set().union(
            *(_tool_names(d) for d in dialogues if d["dialogue_id"] not in held)
        )
    else:
        held = heldout_dialogues([d["dialogue_id"] for d in dialogues], heldout_fraction, seed)
        trained_tools = set()
    train: list[dict] = []
    heldout: list[dict] = []
    rejects: list[dict] = []
    seen_ids = {} if seen_ids is None else seen_ids
    acts: Counter[str] = Counter()
    for d in sorted(dialogues, key=lambda r: r["index"]):
        for sample, step, act in dialogue_samples(d, no_call_acts):
            item = f"{d['dialogue_id']}@{step}"
            sid = sample.sample_id
            if sample.label.calls:
                violations = check_calls(sample.label.calls, sample.tools)
                if violations:
                    rejects.append(
                        _reject(item, "rules", "; ".join(v.message for v in violations), sample)
                    )
                    continue
            elif act in NO_CALL_KINDS and no_call_kind(sample.label.text) != act:
                # The label must do what its act says: a policy answering with the label's
                # own words is read as the label's kind (core.reply), so it matches.
                does = (
                    "ask the user for information"
                    if act == "clarify"
                    else "decline without asking the user for anything"
                )
                rejects.append(
                    _reject(
                        item,
                        "rules",
                        f"a {act} answer must {does}; this one reads as "
                        f"{no_call_kind(sample.label.text)}",
                        sample,
                    )
                )
                continue
            if sid in seen_ids:
                rejects.append(
                    _reject(item, "dedup", f"same tools and context as {seen_ids[sid]}", sample)
                )
                continue
            seen_ids[sid] = item
            trained = sorted({c.name for c in sample.label.calls} & trained_tools)
            if trained and d["dialogue_id"] in held:
                rejects.append(
                    _reject(
                        item,
                        "split",
                        f"held out by tool, but calls {trained}, which training offers",
                        sample,
                    )
                )
                continue
            acts[act] += 1
            row = sample_to_row(sample, dialogue_id=d["dialogue_id"], step=step)
            (heldout if d["dialogue_id"] in held else train).append(row)
    return train, heldout, rejects, dict(sorted(acts.items()))


def _reject(item: str, tier: str, reason: str, sample: Sample) -> dict:
    payload = {
        "tools": sample.tools_json(),
        "context": sample.context_json(),
        "label": sample.label.to_json(),
    }
    return {
        "stage": "seed_samples",
        "item_id": item,
        "tier": tier,
        "reason": reason,
        "payload": canonical_json(payload),
    }
