"""Parameter schemas, argument values and how a user phrases them.

Shared by the template synthesizer (tree field -> JSON schema), the template planner
(schema + optional field hint -> a value) and the template user (value -> words that
contain the value literally, so the intent check can find it in the conversation).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any

from looptool.seed.trees import FieldDef
from looptool.seed.vocab import CITIES, FIRST, LAST, NOUN, more_strings

TIME_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
_GENERIC_WORDS = [
    "amber",
    "harbor",
    "meadow",
    "summit",
    "cobalt",
    "willow",
    "granite",
    "lantern",
    "orchid",
    "falcon",
    "cedar",
    "quartz",
    *NOUN,
]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def snake(name: str) -> str:
    """Canonical (snake_case) form of a snake, camel or dotted name."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.replace(".", "_").replace("-", "_"))
    return s.lower()


def param_name(canonical: str, naming: str) -> str:
    """Parameter names follow camelCase under a camelCase API, snake_case otherwise."""
    return camel(canonical) if naming == "camelCase" else canonical


def words(name: str) -> str:
    return snake(name).replace("_", " ")


def field_schema(f: FieldDef, naming: str) -> dict:
    """JSON schema of one tree field (descriptions say the expected format)."""
    desc = f.description
    t = f.type
    if t == "string":
        return {"type": "string", "description": desc}
    if t == "integer" or t == "number":
        out: dict[str, Any] = {"type": t, "description": desc}
        if f.min is not None:
            out["minimum"] = int(f.min) if t == "integer" else f.min
        if f.max is not None:
            out["maximum"] = int(f.max) if t == "integer" else f.max
        return out
    if t == "boolean":
        return {"type": "boolean", "description": desc}
    if t == "enum":
        return {"type": "string", "enum": list(f.values), "description": desc}
    if t == "date":
        return {"type": "string", "format": "date", "description": f"{desc} (YYYY-MM-DD)"}
    if t == "datetime":
        return {
            "type": "string",
            "format": "date-time",
            "description": f"{desc} (YYYY-MM-DDTHH:MM:SS)",
        }
    if t == "time":
        return {"type": "string", "pattern": TIME_PATTERN, "description": f"{desc} (HH:MM, 24h)"}
    if t == "id":
        return {
            "type": "string",
            "pattern": f"^{re.escape(f.prefix or '')}-[0-9]+$",
            "description": f"{desc} (like {f.prefix}-1234)",
        }
    if t == "array":
        assert f.items is not None
        return {"type": "array", "items": field_schema(f.items, naming), "description": desc}
    if t == "object":
        props = {param_name(s.name or "", naming): field_schema(s, naming) for s in f.fields}
        return {"type": "object", "properties": props, "required": list(props), "description": desc}
    raise ValueError(f"unknown field type {t!r}")


def sub_hint(hint: dict | None, prop: str) -> dict | None:
    """The hint of an object's sub-field, matched by canonical name."""
    if not hint:
        return None
    for sub in hint.get("fields", []):
        if sub.get("name") == snake(prop):
            return sub
    return None


def _date(rng: random.Random) -> dt.date:
    return dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))


def _number(rng: random.Random, lo: float, hi: float, integer: bool) -> int | float:
    if integer:
        return rng.randint(int(lo), int(hi))
    v = round(rng.uniform(lo, hi), rng.choice([0, 1]))
    return int(v) if v == int(v) else v


def gen_value(schema: dict, hint: dict | None, rng: random.Random) -> Any:
    """A value valid under ``schema``; realistic when a tree-field ``hint`` is known."""
    kind = (hint or {}).get("type")
    if "enum" in schema:
        return rng.choice(schema["enum"])
    t = schema.get("type")
    if kind == "string" and hint and hint.get("examples"):
        examples = [str(e) for e in hint["examples"]]
        # the tree's few examples, or (60%) a fresh value of the field's kind
        fresh = more_strings(hint.get("name") or "", examples, rng) if rng.random() < 0.6 else None
        return fresh if fresh is not None else rng.choice(examples)
    if kind == "id" or (
        t == "string" and "pattern" in schema and schema["pattern"].endswith("-[0-9]+$")
    ):
        prefix = (hint or {}).get("prefix") or schema["pattern"][1:].split("\\-")[0].split("-")[0]
        return f"{prefix}-{rng.randint(1000, 9999)}"
    if t == "string":
        fmt = schema.get("format")
        if fmt == "date":
            return _date(rng).isoformat()
        if fmt == "date-time":
            return f"{_date(rng).isoformat()}T{rng.randint(6, 21):02d}:{rng.choice([0, 15, 30, 45]):02d}:00"
        if schema.get("pattern") == TIME_PATTERN:
            return f"{rng.randint(6, 22):02d}:{rng.choice([0, 15, 30, 45]):02d}"
        return _generic_string(schema, rng)
    if t in ("integer", "number"):
        lo = schema.get("minimum", 1)
        hi = schema.get("maximum", max(lo + 20, 20))
        return _number(rng, lo, hi, t == "integer")
    if t == "boolean":
        return rng.random() < 0.5
    if t == "array":
        items = schema.get("items", {"type": "string"})
        ih = (hint or {}).get("items")
        n = rng.randint(1, 3)
        out: list[Any] = []
        for _ in range(n * 4):
            v = gen_value(items, ih, rng)
            if v not in out:
                out.append(v)
            if len(out) == n:
                break
        return out
    if t == "object":
        props = schema.get("properties", {})
        req = set(schema.get("required", []))
        return {
            k: gen_value(s, sub_hint(hint, k), rng)
            for k, s in props.items()
            if k in req or rng.random() < 0.5
        }
    return rng.choice(_GENERIC_WORDS)  # untyped ("any") parameter


def _generic_string(schema: dict, rng: random.Random) -> str:
    desc = (schema.get("description") or "").lower()
    if any(w in desc for w in ("city", "location", "place")):
        return rng.choice(CITIES)
    if "email" in desc:
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@example.com"
    if "name" in desc:
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return f"{rng.choice(_GENERIC_WORDS)} {rng.randint(2, 999)}"


def format_value(v: Any) -> str:
    """How a value is written in text; scalars appear literally (json form for numbers)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return json.dumps(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        parts = [format_value(x) for x in v]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if isinstance(v, dict):
        return ", ".join(f"{words(k)} {format_value(x)}" for k, x in v.items())
    return json.dumps(v)


# Ways to phrase a value without a field's own `say` ({p}: parameter words, {v}: value).
SAY_FORMS = (
    "with {p} {v}",
    "{p} {v}",
    "{p}: {v}",
    "with the {p} set to {v}",
    "where the {p} is {v}",
    "using {v} as the {p}",
    "for {p} {v}",
)
SAY_TRUE = ("with {p}", "with {p} on", "including {p}", "{p} enabled")
SAY_FALSE = ("without {p}", "with {p} off", "no {p}", "{p} disabled")


def say_value(param: str, value: Any, hint: dict | None, rng: random.Random | None = None) -> str:
    """A phrase for one argument; every non-boolean scalar appears verbatim in it. With
    ``rng`` the wording varies (the field's own `say` stays the most likely one)."""
    say = (hint or {}).get("say")
    if rng is not None and say and rng.random() < 0.3:
        say = None
    p = words(param)
    if isinstance(value, bool):
        if value:
            return say or (rng.choice(SAY_TRUE) if rng else SAY_TRUE[0]).format(p=p)
        return (rng.choice(SAY_FALSE) if rng else SAY_FALSE[0]).format(p=p)
    if isinstance(value, dict) and hint and hint.get("fields"):
        return ", ".join(say_value(k, x, sub_hint(hint, k), rng) for k, x in value.items())
    text = format_value(value)
    if say:
        return say.format(v=text)
    return (rng.choice(SAY_FORMS) if rng else SAY_FORMS[0]).format(p=p, v=text)


def scalar_leaves(value: Any) -> list[Any]:
    """Every scalar inside a (nested) argument value."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in scalar_leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in scalar_leaves(v)]
    return [value]


def appears_in(value: Any, text: str) -> bool:
    """Is a scalar value written in ``text``? Strings case-insensitively, numbers as tokens."""
    if isinstance(value, bool) or value is None:
        return True  # booleans are phrased, never quoted; nothing to look for
    if isinstance(value, int | float):
        forms = {json.dumps(value)}
        if isinstance(value, float) and value.is_integer():
            forms.add(str(int(value)))
        # a standalone number: not part of a date, time, code or longer number
        return any(re.search(rf"(?<![\w.:\-]){re.escape(f)}(?![\w:]|\.\d)", text) for f in forms)
    return str(value).lower() in text.lower()
