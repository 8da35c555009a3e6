"""Label-noise injection: corrupt a known fraction of D_seed labels, keep the clean ones.

Kinds (each recorded with whether the noisy label still passes the schema rules):
- ``wrong_value``     one argument gets another value valid for its schema (schema-valid)
- ``swapped_params``  two arguments of a call swap values (valid only if types agree)
- ``wrong_function``  a call names another tool of the sample, same arguments
- ``dropped_call``    one call of a multi-call label is removed (schema-valid)
- ``type_error``      one argument changes JSON type, e.g. 5 -> "5" (schema-invalid)
Only tool-call labels are corrupted; ``sample_id`` is unchanged (it hashes tools and
context), ``label_hash`` and ``kind`` follow the noisy label.
"""

from __future__ import annotations

import json
import random
from typing import Any

from looptool.core.rules import check_calls
from looptool.core.tables import label_from_json, sample_from_row, sample_kind
from looptool.core.types import Label, Sample, ToolCall, canonical_json
from looptool.seed.values import gen_value


class NoiseError(ValueError):
    """The requested noise cannot be injected (unknown kind, too few tool-call labels)."""


NOISE_KINDS = ("wrong_value", "swapped_params", "wrong_function", "dropped_call", "type_error")


def _with_call(label: Label, i: int, call: ToolCall) -> Label:
    calls = list(label.calls)
    calls[i] = call
    return Label(calls=calls)


def _retype(v: Any) -> Any:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return json.dumps(v)


def corrupt(sample: Sample, kind: str, rng: random.Random) -> Label | None:
    """A corrupted copy of the sample's label, or None if ``kind`` does not apply."""
    label = sample.label
    if not label.calls:
        return None
    tools = sample.tool_by_name()
    with_args = [i for i, c in enumerate(label.calls) if c.arguments]
    if kind == "dropped_call":
        if len(label.calls) < 2:
            return None
        calls = list(label.calls)
        del calls[rng.randrange(len(calls))]
        return Label(calls=calls)
    if kind == "wrong_function":
        i = rng.randrange(len(label.calls))
        others = sorted(n for n in tools if n != label.calls[i].name)
        if not others:
            return None
        return _with_call(
            label, i, ToolCall(name=rng.choice(others), arguments=label.calls[i].arguments)
        )
    if not with_args:
        return None
    i = rng.choice(with_args)
    call = label.calls[i]
    args = dict(call.arguments)
    if kind == "swapped_params":
        keys = sorted(k for k in args)
        pairs = [(a, b) for a in keys for b in keys if a < b and args[a] != args[b]]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        args[a], args[b] = args[b], args[a]
    elif kind == "type_error":
        k = rng.choice(sorted(args))
        args[k] = _retype(args[k])
    elif kind == "wrong_value":
        spec = tools.get(call.name)
        props = spec.properties if spec else {}
        keys = sorted(k for k in args if k in props)
        rng.shuffle(keys)
        for k in keys:
            for _ in range(10):
                v = gen_value(props[k], None, rng)
                if canonical_json(v) != canonical_json(args[k]):
                    args[k] = v
                    break
            else:
                continue
            break
        else:
            return None
    else:
        raise NoiseError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")
    return _with_call(label, i, ToolCall(name=call.name, arguments=args))


def inject_noise(
    rows: list[dict], fraction: float, weights: dict[str, float], seed: int
) -> tuple[list[dict], list[dict]]:
    """Corrupt round(fraction * len(rows)) labels (tool-call labels only).

    Each slot draws a kind by ``weights`` first, then takes the next (seeded-shuffled)
    sample the kind applies to, so kinds with few eligible samples (dropped_call needs
    2+ calls) still get their share. Returns (rows with noisy labels swapped in, noise
    records); raises NoiseError if too few samples can be corrupted.
    """
    unknown = sorted(set(weights) - set(NOISE_KINDS))
    if unknown:
        raise NoiseError(f"unknown noise kinds {unknown}; known: {list(NOISE_KINDS)}")
    target = round(fraction * len(rows))
    if target == 0:
        return rows, []
    rng = random.Random(f"seed-noise:{seed}")
    remaining = [i for i, r in enumerate(rows) if json.loads(r["label"]).get("calls")]
    rng.shuffle(remaining)
    samples = {i: sample_from_row(rows[i]) for i in remaining}
    feasible = [k for k in NOISE_KINDS if weights.get(k, 0) > 0]
    out = list(rows)
    records: list[dict] = []
    while len(records) < target and feasible and remaining:
        kind = rng.choices(feasible, weights=[weights[k] for k in feasible])[0]
        for idx in remaining:
            noisy = corrupt(samples[idx], kind, rng)
            if noisy is not None and noisy.hash != samples[idx].label.hash:
                break
        else:
            feasible.remove(kind)  # no remaining sample takes this kind
            continue
        remaining.remove(idx)
        sample = samples[idx]
        noisy_sample = Sample(tools=sample.tools, context=sample.context, label=noisy)
        out[idx] = dict(
            rows[idx],
            label=canonical_json(noisy.to_json()),
            label_hash=noisy.hash,
            kind=sample_kind(noisy_sample),
        )
        records.append(
            {
                "sample_id": rows[idx]["sample_id"],
                "noise_kind": kind,
                "schema_valid": not check_calls(noisy.calls, sample.tools),
                "clean_label": rows[idx]["label"],
                "noisy_label": canonical_json(noisy.to_json()),
                "clean_label_hash": rows[idx]["label_hash"],
                "noisy_label_hash": noisy.hash,
                "dialogue_id": rows[idx].get("dialogue_id"),
                "step": rows[idx].get("step"),
            }
        )
    if len(records) < target:
        raise NoiseError(
            f"label noise {fraction}: needs {target} corruptible tool-call labels, "
            f"found {len(records)}"
        )
    records.sort(key=lambda r: (r["dialogue_id"] or "", r["step"] or 0, r["sample_id"]))
    return out, records


def clean_label(record: dict) -> Label:
    return label_from_json(record["clean_label"])
