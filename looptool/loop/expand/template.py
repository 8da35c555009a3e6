"""Template-backend EDDE: structural variants of an error seed (not a language model).

``edde`` (generate task) rewrites a seed into a new sample and answers in the same JSON
shape an LLM generator is asked for, so one parser and one verifier serve both:

- new values of the same types for the label's arguments that the conversation states
  (strings from a pool / shifted dates / other enum members, other numbers within the
  schema bounds), replaced consistently in the conversation and the label;
- the request re-phrased by the scenario (persona, interaction style), extra turns for
  ``complexity``, verb-synonym function names for ``domain_shift``;
- the tool list in a new order.

``edde_verify`` (choice task) is the grounding check of the LLM verification tier: every
argument value of the reference step must be stated in the conversation (booleans, enum
members and schema defaults excepted).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from functools import lru_cache
from typing import Any

import jsonschema

from looptool.core.types import Label, Message, ToolCall, ToolSpec, canonical_json
from looptool.engines.backends.template import register_choice_task, register_task
from looptool.engines.base import ChatRequest, ChoiceRequest
from looptool.seed.values import appears_in, gen_value, scalar_leaves

WORDS = (
    "Lisbon Osaka Nairobi Denver Tallinn Quito Perth Leipzig Hanoi Cusco Bergen Accra Porto "
    "Valencia Malmo Kyoto Tucson Ghent Oaxaca Dakar Amara Bruno Chiara Devi Emeka Farah Goran "
    "Hana Ivo Jonas Keiko Lior Mateo Nadia Omar Priya Rafael Sana Tomas Uma Viktor Wen Yara "
    "blue green amber violet copper walnut maple cedar harbor summit meadow canyon lantern "
    "orchid falcon pepper saffron quartz velvet"
).split()
PERSONAS = (
    "As a nurse on a night shift, ",
    "I run a small bakery. ",
    "Speaking for our office team: ",
    "I'm a student planning ahead. ",
    "As a retired engineer, ",
    "For my family, ",
)
STYLES = (
    ("Hi! Could you help me with something? ", " Thanks a lot!"),
    ("Quick one: ", ""),
    ("I was wondering if you could take care of this for me. ", ""),
    ("Dear assistant, kindly proceed as follows. ", " Regards."),
    ("Okay so, ", " if that works."),
)
PREAMBLES = (
    ("Hello, I have a few things to sort out today.", "Of course. What do you need first?"),
    ("Hi there, I need some help with an errand.", "Sure, tell me what you need."),
    ("Good morning! Busy day ahead.", "Happy to help. What can I do?"),
)
VERB_SYNONYMS = {
    "get": "fetch",
    "fetch": "retrieve",
    "retrieve": "get",
    "search": "find",
    "find": "lookup",
    "lookup": "search",
    "create": "make",
    "make": "build",
    "add": "insert",
    "insert": "add",
    "update": "modify",
    "modify": "update",
    "delete": "remove",
    "remove": "delete",
    "list": "show",
    "show": "list",
    "book": "reserve",
    "reserve": "book",
    "send": "dispatch",
    "check": "verify",
    "verify": "check",
    "calculate": "compute",
    "compute": "calculate",
    "set": "configure",
    "convert": "transform",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _heuristic_string(value: str, rng: random.Random) -> str | None:
    """Same look, new content: shifted date, new digits, or one word swapped."""
    if _DATE_RE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            return None
        return (day + dt.timedelta(days=rng.randint(1, 60))).isoformat()
    if _MONTH_RE.match(value):
        year, month = int(value[:4]), int(value[5:7])
        month = (month - 1 + rng.randint(1, 11)) % 12 + 1
        return f"{year}-{month:02d}"
    if _TIME_RE.match(value):
        return f"{rng.randint(6, 22):02d}:{rng.choice(['00', '15', '30', '45'])}"
    if any(ch.isdigit() for ch in value):  # ids and codes: keep the shape, change digits
        return re.sub(r"\d", lambda m: str(rng.randint(1 if m.start() == 0 else 0, 9)), value)
    words = value.split()
    if not words or len(value) > 60:
        return None
    i = rng.randrange(len(words))
    pick = rng.choice([w for w in WORDS if w.lower() != words[i].lower()])
    words[i] = pick.capitalize() if words[i][:1].isupper() else pick.lower()
    return " ".join(words)


def _heuristic_number(value: int | float, rng: random.Random) -> int | float:
    if isinstance(value, int):
        return rng.randint(max(1, value // 2), max(value * 2, value + 5))
    return round(value * rng.uniform(0.5, 1.5), 2)


def _valid(value: Any, schema: dict) -> bool:
    return _validator(canonical_json(schema)).is_valid(value)


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


def _new_value(
    value: str | int | float, schema: dict, rng: random.Random
) -> str | int | float | None:
    """Another value of the same JSON type that ``schema`` accepts, or None.

    Tries the seed generator's schema-aware values (:func:`looptool.seed.values.gen_value`:
    ids by pattern, dates by format, cities/names by description), then a same-look
    variation of the old value; every candidate is validated against the schema.
    """
    enum = schema.get("enum")
    if isinstance(enum, list):
        others = [e for e in enum if e != value and type(e) is type(value)]
        return rng.choice(others) if others else None
    same_look = [
        _heuristic_string(value, rng) if isinstance(value, str) else _heuristic_number(value, rng)
        for _ in range(3)
    ]
    generated = [gen_value(schema, None, rng) for _ in range(3)] if schema else []
    # A pattern or format says what a valid value looks like: generate by it first.
    constrained = isinstance(value, str) and ("pattern" in schema or "format" in schema)
    candidates = generated + same_look if constrained else same_look + generated
    for new in candidates:
        if new is None or new == value or type(new) is not type(value):
            continue
        if isinstance(new, str) and (not new.strip() or len(new) > 80):
            continue
        if _valid(new, schema):
            return new
    return None


def _text_of(messages: list[Message]) -> str:
    parts = []
    for m in messages:
        parts.append(m.content)
        parts.extend(json.dumps(c.arguments, ensure_ascii=False) for c in m.tool_calls)
    return "\n".join(parts)


def _token_re(value: Any) -> re.Pattern[str]:
    text = value if isinstance(value, str) else json.dumps(value)
    flags = re.IGNORECASE if isinstance(value, str) else 0
    return re.compile(rf"(?<![\w.]){re.escape(text)}(?![\w])", flags)


def _leaves(value: Any, schema: dict) -> list[tuple[Any, dict]]:
    """(scalar, its schema) for every scalar inside an argument value."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v, schema.get("items", {}))]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return [x for k, v in value.items() for x in _leaves(v, props.get(k, {}))]
    return [(value, schema)]


def _value_map(
    label: Label, tools: dict[str, ToolSpec], context: list[Message], rng: random.Random
) -> dict:
    """old scalar -> new scalar for label argument values stated in the conversation.

    A value whose text also occurs inside another label string (the 4 of "4 Rua Nova")
    is left alone: replacing it in the conversation would silently change the other.
    """
    text = _text_of(context)
    leaves = [
        leaf
        for call in label.calls
        for key, value in call.arguments.items()
        for leaf in _leaves(
            value, (tools[call.name].properties if call.name in tools else {}).get(key, {})
        )
    ]
    strings = {v for v, _ in leaves if isinstance(v, str)}
    mapping: dict = {}
    for v, schema in leaves:
        if (
            isinstance(v, bool)
            or not isinstance(v, str | int | float)
            or (type(v).__name__, v) in mapping
        ):
            continue
        pattern = _token_re(v)
        if not pattern.search(text):
            continue  # not stated: changing it would break grounding
        if any(pattern.search(other) for other in strings if other != v):
            continue
        new = _new_value(v, schema, rng)
        taken = {str(x).lower() for x in mapping.values()} | {str(k[1]).lower() for k in mapping}
        if new is not None and not _token_re(new).search(text) and str(new).lower() not in taken:
            mapping[(type(v).__name__, v)] = new
    return mapping


def _map_value(value: Any, mapping: dict) -> Any:
    if isinstance(value, list):
        return [_map_value(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _map_value(v, mapping) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    return mapping.get((type(value).__name__, value), value)


def _map_text(text: str, mapping: dict) -> str:
    """Replace every stated old value in one pass (so a new value is never re-mapped);
    longer values first in the alternation, so "New York City" wins over "New York"."""
    if not mapping:
        return text
    olds = sorted(mapping, key=lambda k: -len(str(k[1])))
    parts = []
    for i, (_, old) in enumerate(olds):
        body = old if isinstance(old, str) else json.dumps(old)
        parts.append(f"(?P<g{i}>{re.escape(body)})")
    pattern = re.compile(rf"(?<![\w.])(?:{'|'.join(parts)})(?![\w])", re.IGNORECASE)

    def repl(m: re.Match[str]) -> str:
        new = mapping[olds[int(m.lastgroup[1:])]]
        return new if isinstance(new, str) else json.dumps(new)

    return pattern.sub(repl, text)


def _rename(name: str) -> str:
    head, sep, rest = name.partition("_")
    if sep and head.lower() in VERB_SYNONYMS:
        return VERB_SYNONYMS[head.lower()] + "_" + rest
    return f"{name}_v2"


def _prefixed(prefix: str, text: str) -> str:
    """``prefix + text``, continuing the sentence in lower case after ", " or ": "."""
    if prefix.endswith((", ", ": ")):
        text = text[:1].lower() + text[1:]
    return prefix + text


def variant(payload: dict, rng: random.Random) -> dict:
    """One structural variant of the seed in ``payload`` (see the module docstring)."""
    tools = [ToolSpec.model_validate(t) for t in payload["tools"]]
    context = [Message.model_validate(m) for m in payload["context"]]
    label = Label.model_validate(payload["label"])
    scenario = payload.get("scenario", "data_variation")
    by_name = {t.name: t for t in tools}

    mapping = _value_map(label, by_name, context, rng)
    context = [
        Message(
            role=m.role,
            content=_map_text(m.content, mapping),
            tool_calls=[
                ToolCall(name=c.name, arguments=_map_value(c.arguments, mapping))
                for c in m.tool_calls
            ],
            name=m.name,
        )
        for m in context
    ]
    label = (
        Label(
            calls=[
                ToolCall(name=c.name, arguments=_map_value(c.arguments, mapping))
                for c in label.calls
            ]
        )
        if label.calls
        else label
    )

    last_user = max((i for i, m in enumerate(context) if m.role == "user"), default=None)
    if last_user is not None:
        m = context[last_user]
        content = m.content
        if scenario == "user_persona":
            content = _prefixed(rng.choice(PERSONAS), content)
        elif scenario == "interaction_style":
            pre, post = rng.choice(STYLES)
            content = _prefixed(pre, content) + post
        context[last_user] = Message(
            role="user", content=content, tool_calls=m.tool_calls, name=m.name
        )
    if scenario == "complexity":
        hello, reply = rng.choice(PREAMBLES)
        context = [
            Message(role="user", content=hello),
            Message(role="assistant", content=reply),
            *context,
        ]
    if scenario == "domain_shift":
        renames = {t.name: _rename(t.name) for t in tools}
        if len(set(renames.values())) == len(renames) and not set(renames.values()) & set(renames):
            tools = [
                ToolSpec(name=renames[t.name], description=t.description, parameters=t.parameters)
                for t in tools
            ]
            context = [
                Message(
                    role=m.role,
                    content=m.content,
                    tool_calls=[
                        ToolCall(name=renames.get(c.name, c.name), arguments=c.arguments)
                        for c in m.tool_calls
                    ],
                    name=renames.get(m.name, m.name) if m.name else None,
                )
                for m in context
            ]
            if label.calls:
                label = Label(
                    calls=[
                        ToolCall(name=renames.get(c.name, c.name), arguments=c.arguments)
                        for c in label.calls
                    ]
                )
    rng.shuffle(tools)
    return {
        "tools": [t.to_json() for t in tools],
        "context": [m.to_json() for m in context],
        "label": label.to_json(),
    }


@register_task("edde")
def edde_task(request: ChatRequest, rng: random.Random) -> str:
    if not request.payload:
        raise ValueError("edde template task needs a payload with tools, context and label")
    return json.dumps(variant(request.payload, rng), ensure_ascii=False)


def grounded(payload: dict) -> bool:
    """Every label argument value is stated in the conversation's user / tool turns
    (:func:`looptool.seed.values.appears_in`, the seed verifier's test); enum members and
    schema defaults are exempt, since a request may imply them without quoting them."""
    tools = {t.name: t for t in (ToolSpec.model_validate(t) for t in payload["tools"])}
    context = [Message.model_validate(m) for m in payload["context"]]
    label = Label.model_validate(payload["label"])
    text = "\n".join(m.content for m in context if m.role in ("user", "tool"))
    for call in label.calls:
        props = tools[call.name].properties if call.name in tools else {}
        for key, value in call.arguments.items():
            schema = props.get(key) if isinstance(props.get(key), dict) else {}
            if "default" in schema and value == schema["default"]:
                continue
            enum = (schema.get("items", {}) if isinstance(value, list) else schema).get(
                "enum"
            ) or []
            if any(not appears_in(v, text) and v not in enum for v in scalar_leaves(value)):
                return False
    return True


@register_choice_task("edde_verify")
def edde_verify_task(request: ChoiceRequest, rng: random.Random) -> str:
    if not request.payload:
        raise ValueError("edde_verify template task needs a payload with tools, context and label")
    return "VALID" if grounded(request.payload) else "INVALID"
