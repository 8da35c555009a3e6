"""API synthesis: a context-tree leaf + a constraint-tree path -> a validated function spec.

Generation goes through the generator engine (task ``seed.api``): LLM backends get a
prompt asking for a JSON spec; the template backend runs :func:`synthesize_spec`, a
programmatic synthesizer over the leaf's vocabulary. Both outputs pass the same rule
validation (:func:`validate_api`): valid JSON schema, naming convention, parameter
count / types / required split per the drawn constraints, a result schema of the drawn
output shape, and names unique within the pool.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from looptool.core.types import ToolSpec, ToolSpecError, canonical_json, content_hash
from looptool.engines.base import ChatRequest, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.prompts import load_prompt
from looptool.seed.jsontext import extract_json
from looptool.seed.trees import FieldDef, Leaf, Trees
from looptool.seed.values import TIME_PATTERN, camel, field_schema, param_name, snake

API_TASK = "seed.api"

NAMING_RE = {
    "snake_case": re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"),
    "camelCase": re.compile(r"^[a-z][a-z0-9]*([A-Z][a-z0-9]*)*$"),
    "dotted": re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"),
}
_PARAM_RE = {
    "camelCase": re.compile(r"^[a-z][a-zA-Z0-9]*$"),
    "snake_case": re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"),
}


@dataclass(frozen=True)
class ApiDraw:
    """One seeded draw from both trees (the provenance of a synthesized API)."""

    index: int
    context_path: str
    leaf: Leaf
    constraint_path: str
    constraints: dict[str, Any]

    @property
    def domain(self) -> str:
        return self.context_path.split("/", 1)[0]


def draw_apis(trees: Trees, n: int, seed: int) -> list[ApiDraw]:
    rng = random.Random(f"seed-apis:{seed}")
    out = []
    for i in range(n):
        cpath, leaf, kpath, cons = trees.draw(rng)
        out.append(ApiDraw(i, cpath, leaf, kpath, cons))
    return out


def function_name(
    verb: str, obj: str, naming: str, form: str = "plain", by: str | None = None
) -> str:
    """The function name for a verb/object pair in a naming convention and name form.

    Forms: ``plain`` (search_hotels), ``by`` (search_hotels_by_city), ``noun_first``
    (hotels_search); dotted names put the object first (hotels.search, hotels.search_by_city).
    """
    verb_w = snake(verb.replace(" ", "_"))
    obj_w = snake(obj.replace(" ", "_"))
    suffix = f"_by_{by}" if form == "by" and by else ""
    if naming == "dotted":
        return f"{obj_w}.{verb_w}{suffix}"
    base = f"{obj_w}_{verb_w}" if form == "noun_first" else f"{verb_w}_{obj_w}{suffix}"
    return camel(base) if naming == "camelCase" else base


def schema_features(schema: dict) -> set[str]:
    """Type features of one parameter schema (as named in the constraint tree)."""
    out: set[str] = set()
    if "enum" in schema:
        out.add("enum")
    t = schema.get("type")
    if t in ("array", "object", "boolean", "integer", "number", "string"):
        out.add(t)
    if schema.get("format") == "date":
        out.add("date")
    if schema.get("format") == "date-time":
        out.add("datetime")
    if schema.get("format") == "time" or schema.get("pattern") == TIME_PATTERN:
        out.add("time")
    return out


def _field_features(f: FieldDef) -> set[str]:
    return {f.type} if f.type != "id" else {"string"}


def returns_schema(fields: list[FieldDef], naming: str, output: str) -> dict:
    props = {param_name(f.name or "", naming): field_schema(f, naming) for f in fields}
    record = {"type": "object", "properties": props, "required": list(props)}
    if output == "list":
        return {"type": "array", "items": record}
    if output == "envelope":
        return {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok"]}, "data": record},
            "required": ["status", "data"],
        }
    return record


def synthesize_spec(
    leaf: Leaf, constraints: dict[str, Any], fallback: dict[str, list[FieldDef]], rng: random.Random
) -> dict:
    """Template synthesizer: a spec from the leaf vocabulary shaped by the constraints.

    It does not force a fit: a leaf whose identifier fields plus required type features
    exceed the drawn parameter range yields a spec that rule validation rejects.
    """
    naming = constraints["naming"]
    lo, hi = constraints["params"]
    n = rng.randint(lo, hi)
    chosen: list[FieldDef] = [f for f in leaf.fields if f.key]
    pool = [f for f in leaf.fields if not f.key]
    rng.shuffle(pool)
    for feature in constraints["types"]:
        if any(feature in _field_features(f) for f in chosen):
            continue
        match = [f for f in pool if feature in _field_features(f)]
        extra = match[0] if match else rng.choice(fallback.get(feature, [None]))
        if extra is None:
            continue
        chosen.append(extra)
        if extra in pool:
            pool.remove(extra)
    spare = pool + [
        f for fs in fallback.values() for f in fs if f.type in ("integer", "string", "enum")
    ]
    for f in spare:
        if len(chosen) >= n:
            break
        if all(f.name != c.name for c in chosen):
            chosen.append(f)
    names = [param_name(f.name or "", naming) for f in chosen]
    keys = [nm for nm, f in zip(names, chosen, strict=True) if f.key]
    others = [nm for nm in names if nm not in keys]
    rule = constraints["required"]
    if rule == "all":
        required = names
    elif rule == "one":
        required = keys or others[:1]
    else:  # most: at least half, identifiers first
        need = max(len(keys), math.ceil(len(names) / 2))
        rest = others[:]
        rng.shuffle(rest)
        required = keys + rest[: need - len(keys)]
    required = [nm for nm in names if nm in set(required)]  # keep declaration order
    verb = rng.choice(leaf.verbs)
    form = rng.choice(["plain", "by", "noun_first"])
    by_field = rng.choice([f.name for f in chosen if not f.key and f in leaf.fields] or [None])
    props = {nm: field_schema(f, naming) for nm, f in zip(names, chosen, strict=True)}
    return {
        "name": function_name(verb, leaf.object, naming, form, by_field),
        "description": leaf.description,
        "parameters": {"type": "object", "properties": props, "required": required},
        "returns": returns_schema(leaf.returns, naming, constraints["output"]),
    }


def describe_constraints(cons: dict[str, Any]) -> str:
    lo, hi = cons["params"]
    req = {
        "all": "every parameter required",
        "most": "at least half of the parameters required",
        "one": "exactly one required parameter",
    }[cons["required"]]
    types = ", ".join(cons["types"]) or "any"
    shape = {
        "record": "a single JSON object",
        "list": "a JSON array of objects",
        "envelope": 'an object {"status": "ok", "data": {...}}',
    }[cons["output"]]
    return (
        f"- naming convention: {cons['naming']}\n- parameters: between {lo} and {hi}\n"
        f'- {req}\n- must include parameter types: {types}\n- result ("returns"): {shape}'
    )


def api_request(
    draw: ApiDraw,
    trees: Trees,
    template: bool,
    sampling: SamplingParams,
    enable_thinking: bool = False,
) -> ChatRequest:
    """The generation request of one draw (prompt for LLMs, payload for the template);
    ``enable_thinking`` goes to the chat template (off: the budget is for the spec)."""
    leaf = draw.leaf
    fields = "\n".join(f"- {f.name} ({f.type}): {f.description}" for f in leaf.fields)
    prompt = load_prompt("seed_api").format(
        path=draw.context_path,
        description=leaf.description,
        object=leaf.object,
        verbs=", ".join(leaf.verbs),
        fields=fields,
        constraints=describe_constraints(draw.constraints),
    )
    payload = None
    if template:
        payload = {
            "leaf": leaf.model_dump(mode="json", exclude_none=True),
            "constraints": draw.constraints,
            "fallback": {
                k: [f.model_dump(mode="json", exclude_none=True) for f in v]
                for k, v in trees.constraint.fallback_fields.items()
            },
        }
    return ChatRequest(
        messages=[{"role": "user", "content": prompt}],
        params=sampling,
        chat_template_kwargs=None if template else {"enable_thinking": enable_thinking},
        task=API_TASK,
        payload=payload,
    )


def validate_api(
    obj: Any, constraints: dict[str, Any], taken: set[str]
) -> tuple[ToolSpec | None, dict | None, list[str]]:
    """Rule validation of one generated spec: (spec, returns schema, problems)."""
    if not isinstance(obj, dict):
        return None, None, ["spec is not a JSON object"]
    try:
        spec = ToolSpec.from_any({k: v for k, v in obj.items() if k != "returns"}, "spec")
    except ToolSpecError as exc:
        return None, None, [f"invalid spec: {exc}"]
    problems: list[str] = []
    naming = constraints["naming"]
    if not NAMING_RE[naming].match(spec.name):
        problems.append(f"name {spec.name!r} does not follow {naming}")
    if not spec.description.strip():
        problems.append("missing function description")
    props = spec.properties
    lo, hi = constraints["params"]
    if not lo <= len(props) <= hi:
        problems.append(f"parameter count {len(props)} outside [{lo}, {hi}]")
    pre = _PARAM_RE["camelCase" if naming == "camelCase" else "snake_case"]
    bad = [p for p in props if not pre.match(p)]
    if bad:
        problems.append(f"parameter names {bad} do not follow the naming convention")
    undocumented = [p for p, s in props.items() if not (s.get("description") or "").strip()]
    if undocumented:
        problems.append(f"parameters without description: {undocumented}")
    r, n = len(spec.required), len(props)
    rule = constraints["required"]
    if rule == "all" and r != n:
        problems.append(f"{r} of {n} parameters required; constraint 'all' needs every one")
    elif rule == "one" and r != 1:
        problems.append(f"{r} required parameters; constraint 'one' needs exactly 1")
    elif rule == "most" and (r < math.ceil(n / 2) or r == 0):
        problems.append(f"{r} of {n} parameters required; constraint 'most' needs at least half")
    have = set().union(*(schema_features(s) for s in props.values())) if props else set()
    missing = [t for t in constraints["types"] if t not in have]
    if missing:
        problems.append(f"missing required parameter types {missing}")
    returns = obj.get("returns")
    if returns is None:
        problems.append("missing 'returns' result schema")
    else:
        problems.extend(_check_returns(returns, constraints["output"]))
    if spec.name in taken:
        problems.append(f"duplicate name {spec.name!r} already in the pool")
    return spec, returns if isinstance(returns, dict) else None, problems


def _check_returns(returns: Any, output: str) -> list[str]:
    if not isinstance(returns, dict):
        return ["'returns' is not a JSON schema object"]
    try:
        jsonschema.Draft202012Validator.check_schema(returns)
    except jsonschema.SchemaError as exc:
        return [f"'returns' is not a valid JSON schema: {exc.message}"]
    t = returns.get("type")
    if output == "record" and not (t == "object" and returns.get("properties")):
        return ["'returns' must be an object with properties (output: record)"]
    if output == "list" and not (t == "array" and isinstance(returns.get("items"), dict)):
        return ["'returns' must be an array of records (output: list)"]
    if output == "envelope":
        p = returns.get("properties", {})
        if not (t == "object" and "status" in p and "data" in p):
            return ["'returns' must be an object with status and data (output: envelope)"]
    return []


def api_hints(
    spec: ToolSpec, returns: dict | None, leaf: Leaf, fallback: dict[str, list[FieldDef]]
) -> dict:
    """Tree vocabulary for the spec's parameters/results, matched by canonical name."""
    defs = {f.name: f for fs in fallback.values() for f in fs}
    defs.update({f.name: f for f in leaf.fields})
    params = {}
    for name, schema in spec.properties.items():
        f = defs.get(snake(name))
        if f is not None and schema_features(schema) & (_field_features(f) | {"enum", "string"}):
            params[name] = f.model_dump(mode="json", exclude_none=True)
    rdefs = {f.name: f for f in leaf.returns}
    rets = {}
    for name in record_props(returns):
        f = rdefs.get(snake(name))
        if f is not None:
            rets[name] = f.model_dump(mode="json", exclude_none=True)
    return {
        "ask": list(leaf.ask),
        "object": leaf.object,
        "params": params,
        "returns": rets,
        "errors": list(leaf.errors),
    }


def record_props(returns: dict | None) -> list[str]:
    if not isinstance(returns, dict):
        return []
    if returns.get("type") == "array":
        return record_props(returns.get("items"))
    props = returns.get("properties", {})
    if "data" in props and "status" in props:
        return record_props(props["data"])
    return list(props)


def api_row(
    spec: ToolSpec, returns: dict | None, hints: dict | None, domain: str, source: str, **extra: Any
) -> dict:
    return {
        "api_id": content_hash({"spec": spec.to_json(), "returns": returns}),
        "name": spec.name,
        "spec": canonical_json(spec.to_json()),
        "returns": canonical_json(returns) if returns is not None else None,
        "hints": canonical_json(hints) if hints is not None else None,
        "domain": domain,
        "source": source,
        **extra,
    }


def build_pool(
    draws: list[ApiDraw],
    texts: Sequence[str | Failed],
    trees: Trees,
    taken: set[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Parse + validate each draw's output: (API rows, reject rows); a draw whose
    request failed (:class:`Failed`) is a reject of tier ``engine_failed``."""
    taken = set() if taken is None else taken
    rows: list[dict] = []
    rejects: list[dict] = []
    fallback = trees.constraint.fallback_fields
    for draw, text in zip(draws, texts, strict=True):
        item = f"draw-{draw.index:05d}"
        if isinstance(text, Failed):
            reject = _reject(item, ENGINE_FAILED, failure_note(text), {"draw": _draw_json(draw)})
            rejects.append(reject)
            continue
        obj, err = extract_json(text)
        if err is not None:
            rejects.append(_reject(item, "parse", err, {"draw": _draw_json(draw), "output": text}))
            continue
        spec, returns, problems = validate_api(obj, draw.constraints, taken)
        if problems:
            tier = "dedup" if problems[0].startswith("duplicate name") else "rules"
            rejects.append(
                _reject(item, tier, "; ".join(problems), {"draw": _draw_json(draw), "spec": obj})
            )
            continue
        assert spec is not None
        taken.add(spec.name)
        rows.append(
            api_row(
                spec,
                returns,
                api_hints(spec, returns, draw.leaf, fallback),
                draw.domain,
                "synth",
                context_path=draw.context_path,
                constraint_path=draw.constraint_path,
                constraints=canonical_json(draw.constraints),
                draw=draw.index,
            )
        )
    return rows, rejects


def _draw_json(draw: ApiDraw) -> dict:
    return {
        "index": draw.index,
        "context_path": draw.context_path,
        "constraint_path": draw.constraint_path,
        "constraints": draw.constraints,
    }


def _reject(item: str, tier: str, reason: str, payload: Any) -> dict:
    return {
        "stage": "seed_apis",
        "item_id": item,
        "tier": tier,
        "reason": reason,
        "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str),
    }
