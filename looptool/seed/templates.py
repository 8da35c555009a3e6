"""Template-backend implementations of the seed tasks. These are not language models.

On the CPU default the generator role is the ``template`` backend: plain, seeded Python
functions registered with :func:`looptool.engines.backends.template.register_task`, reading the
structured ``payload`` of each request (LLM backends read the prompt instead):

- ``seed.api``        synthesizer: a spec from a tree leaf + constraint path
- ``seed.planner``    plans turns over the dialogue's tools (values from tree vocabulary)
- ``seed.user``       renders the plan turn as a user message (values written literally)
- ``seed.assistant``  emits the planned calls / clarification / refusal / summary; with
                      probability ``slip_rate`` it makes a deliberate, recorded kind of
                      mistake (drops a required value, invents a value, picks another
                      tool) so the verification tiers have something real to filter
- ``seed.tool``       simulated results conforming to the API's result schema
- ``seed.verify_intent`` (choice) / ``seed.verify_reason``: the template implementation
                      of the second verification tier, a programmatic intent check
                      (:func:`looptool.seed.intent.intent_problems`), not an LLM judgment.
"""

from __future__ import annotations

import json
import random
from typing import Any

from looptool.core.codec import render_calls
from looptool.core.types import ToolCall
from looptool.engines.backends.template import register_choice_task, register_task
from looptool.engines.base import ChatRequest, ChoiceRequest
from looptool.seed.apis import API_TASK, synthesize_spec
from looptool.seed.intent import intent_problems
from looptool.seed.plan import find_chains
from looptool.seed.roles import (
    ASSISTANT_TASK,
    PLANNER_TASK,
    TOOL_TASK,
    USER_TASK,
    VERIFY_CHOICE_TASK,
    VERIFY_REASON_TASK,
)
from looptool.seed.trees import FieldDef, Leaf
from looptool.seed.values import format_value, gen_value, say_value, words

GENERIC_ERRORS = ["service temporarily unavailable", "rate limit exceeded", "upstream timeout"]
SLIP_KINDS = ("drop_required", "invented_value", "wrong_tool")


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


@register_task(API_TASK)
def api_task(request: ChatRequest, rng: random.Random) -> str:
    p = request.payload or {}
    leaf = Leaf.model_validate(p["leaf"])
    fallback = {k: [FieldDef.model_validate(f) for f in v] for k, v in p["fallback"].items()}
    return _dump(synthesize_spec(leaf, p["constraints"], fallback, rng))


# --- planner ---------------------------------------------------------------------------


def _make_call(entry: dict, rng: random.Random, optional_rate: float = 0.4) -> dict:
    params = entry["spec"].get("parameters", {})
    required = set(params.get("required", []))
    hints = (entry.get("hints") or {}).get("params", {})
    args = {
        name: gen_value(schema, hints.get(name), rng)
        for name, schema in params.get("properties", {}).items()
        if name in required or rng.random() < optional_rate
    }
    return {"name": entry["spec"]["name"], "arguments": args}


def _maybe_fail(call: dict, entry: dict, rate: float, rng: random.Random) -> dict:
    if rng.random() < rate:
        errors = (entry.get("hints") or {}).get("errors") or GENERIC_ERRORS
        call["fails"] = True
        call["error"] = rng.choice(errors)
    return call


def _n_params(entry: dict) -> int:
    return len(entry["spec"].get("parameters", {}).get("properties", {}))


def _clarify_targets(entry: dict) -> list[str]:
    params = entry["spec"].get("parameters", {})
    props = params.get("properties", {})
    return [r for r in params.get("required", []) if props.get(r, {}).get("type") != "boolean"]


def _plan_turn(kind: str, entries: list[dict], chains: list, p: dict, rng: random.Random) -> dict:
    rate = float(p.get("tool_error_rate", 0.0))
    if kind == "irrelevant":
        offtopic = p.get("offtopic") or ["tell me a joke about penguins"]
        return {"kind": kind, "request": rng.choice(offtopic), "steps": []}
    if kind == "parallel":
        with_params = [e for e in entries if _n_params(e) > 0]
        if len(entries) >= 2 and (rng.random() < 0.5 or not with_params):
            picks = rng.sample(entries, min(len(entries), 3 if rng.random() < 0.2 else 2))
            calls = [_make_call(e, rng) for e in picks]
        else:
            e = rng.choice(with_params or entries)
            calls = [_make_call(e, rng)]
            for _ in range(8):  # a second call with different values
                c = _make_call(e, rng)
                if c["arguments"] != calls[0]["arguments"]:
                    calls.append(c)
                    break
        by_name = {e["spec"]["name"]: e for e in entries}
        return {
            "kind": kind,
            "steps": [[_maybe_fail(c, by_name[c["name"]], rate, rng) for c in calls]],
        }
    if kind == "multi_step":
        by_name = {e["spec"]["name"]: e for e in entries}
        if chains:
            a, key, b, param = rng.choice(chains)
            first = _make_call(by_name[a], rng)
            second = _make_call(by_name[b], rng)
            schema = by_name[b]["spec"]["parameters"]["properties"][param]
            hint = ((by_name[b].get("hints") or {}).get("params") or {}).get(param)
            value = gen_value(schema, hint, rng)
            first["provides"] = {key: value}
            second["arguments"][param] = value
            second["uses"] = {param: f"step0.{key}"}
            return {"kind": kind, "steps": [[first], [_maybe_fail(second, by_name[b], rate, rng)]]}
        a, b = rng.sample(entries, 2) if len(entries) >= 2 else [entries[0], entries[0]]
        return {
            "kind": kind,
            "steps": [
                [_maybe_fail(_make_call(a, rng), a, rate, rng)],
                [_maybe_fail(_make_call(b, rng), b, rate, rng)],
            ],
        }
    if kind == "clarify":
        targets = [e for e in entries if _clarify_targets(e)]
        if targets:
            e = rng.choice(targets)
            call = _make_call(e, rng)
            return {
                "kind": kind,
                "omit": rng.choice(_clarify_targets(e)),
                "steps": [[_maybe_fail(call, e, rate, rng)]],
            }
        kind = "single"  # nothing to leave out: the plan check rejects the mismatch
    e = rng.choice(entries)
    return {"kind": kind, "steps": [[_maybe_fail(_make_call(e, rng), e, rate, rng)]]}


@register_task(PLANNER_TASK)
def planner_task(request: ChatRequest, rng: random.Random) -> str:
    p = request.payload or {}
    entries = p["tools"]
    chains = find_chains(entries)
    return _dump({"turns": [_plan_turn(k, entries, chains, p, rng) for k in p["kinds"]]})


# --- user ------------------------------------------------------------------------------


# Phrasings of the template user (more of them = fewer near-identical requests).
GREETINGS = ("Hi! ", "Hello, ", "Hey. ", "", "", "Good morning. ", "Hi there, ", "Hey there! ",
             "Hello! ", "Good evening, ", "Quick question. ", "Excuse me, ")  # fmt: skip
FOLLOW_UPS = ("", "", "Thanks. ", "Great. ", "Next, ", "Perfect. ", "Thanks! Now ", "OK, ",
              "Also, ", "One more thing: ", "Got it. ", "Now ")  # fmt: skip
STYLES = ("Please {b}.", "Could you {b}?", "Can you {b}?", "I need you to {b}.", "Would you {b}?",
          "Help me {b}.", "I'd like you to {b}.", "Go ahead and {b}.", "Please {b}, thanks.",
          "I want you to {b}.", "Could you please {b}?", "Let's {b}.", "Quick one: {b}.",
          "Is it possible to {b}?", "{b}, please.", "Can you help me {b}?",
          "I was hoping you could {b}.", "My request: {b}.")  # fmt: skip
ALSO = (", and also {c}", " and {c}", "; also {c}", ", plus {c}")
CHAINED = ("{a}, then {b} using the {k} from that result",
           "{a}, and then {b} with the {k} you get back",
           "first {a}; after that, {b} using the {k} it returns",
           "{a}, then take the {k} from that and {b}",
           "{a}; once you have the {k}, {b}")  # fmt: skip
SEQUENCE = ("first {a}, and after that {b}", "{a}, then {b}", "{a}; once that is done, {b}",
            "{a} and afterwards {b}")  # fmt: skip
PROVIDE = ("Sure, {p}.", "Oh right, {p}.", "Of course: {p}.", "Sorry, {p}.", "Ah, {p}.",
           "My bad, {p}.", "Yes, {p}.", "Good point, {p}.", "Right, {p}.", "Oops, {p}.")  # fmt: skip


def _ask(name: str, hints: dict, descriptions: dict, rng: random.Random) -> str:
    """A way to ask for a function: the tree's phrasings, or its description as a verb
    phrase ("Send a direct message to a user." -> "send a direct message to a user")."""
    asks = list((hints.get(name) or {}).get("ask") or [f"use {words(name)}"])
    desc = (descriptions.get(name) or "").strip().rstrip(".")
    if desc and " " in desc and desc[:1].isupper() and "," not in desc:
        asks.append(desc[:1].lower() + desc[1:])
    return rng.choice(asks)


def _clause(call: dict, p: dict, rng: random.Random, skip: set[str]) -> str:
    hints = p["hints"]
    ask = _ask(call["name"], hints, p.get("descriptions") or {}, rng)
    ph = (hints.get(call["name"]) or {}).get("params", {})
    items = [(k, v) for k, v in call["arguments"].items() if k not in skip]
    rng.shuffle(items)
    parts = [say_value(k, v, ph.get(k), rng) for k, v in items]
    if len(parts) > 1 and rng.random() < 0.5:
        parts = [", ".join(parts[:-1]) + " and " + parts[-1]]
    return ask + (" " + ", ".join(parts) if parts else "")


@register_task(USER_TASK)
def user_task(request: ChatRequest, rng: random.Random) -> str:
    p = request.payload or {}
    turn, hints = p["turn"], p["hints"]
    if p["mode"] == "provide":
        call = turn["steps"][0][0]
        omit = turn["omit"]
        hint = (hints.get(call["name"]) or {}).get("params", {}).get(omit)
        phrase = say_value(omit, call["arguments"][omit], hint, rng)
        return rng.choice(PROVIDE).format(p=phrase)
    greet = rng.choice(GREETINGS if p["first"] else FOLLOW_UPS)
    if turn["kind"] == "irrelevant":
        body = turn["request"]
    else:
        steps = turn["steps"]
        skip0 = {turn["omit"]} if turn.get("omit") else set()
        if turn["kind"] == "multi_step":
            a, b = steps[0][0], steps[1][0]
            uses = b.get("uses") or {}
            first = _clause(a, p, rng, skip0)
            second = _clause(b, p, rng, set(uses))
            if uses:
                key = words(next(iter(uses.values())).split(".", 1)[1])
                body = rng.choice(CHAINED).format(a=first, b=second, k=key)
            else:
                body = rng.choice(SEQUENCE).format(a=first, b=second)
        else:
            clauses = [
                _clause(c, p, rng, skip0 if i == 0 else set()) for i, c in enumerate(steps[0])
            ]
            body = clauses[0] + "".join(rng.choice(ALSO).format(c=c) for c in clauses[1:])
    text = rng.choice(STYLES).format(b=body) if turn["kind"] != "irrelevant" else body
    # after "Hello, " / "Now " the sentence goes on in lower case; after "Hi! " it starts anew
    go_on = greet and greet.rstrip()[-1] not in ".!?" and not text.startswith(("I ", "I'"))
    text = (text[:1].lower() if go_on else text[:1].upper()) + text[1:]
    return greet + text


# --- assistant -------------------------------------------------------------------------


def _slip(calls: list[dict], p: dict, rng: random.Random) -> list[dict]:
    specs = p["tools"]
    kinds = []
    if any(
        set(specs[c["name"]]["parameters"].get("required", [])) & set(c["arguments"])
        for c in calls
        if c["name"] in specs
    ):
        kinds.append("drop_required")
    if any(
        isinstance(v, str | int | float) and not isinstance(v, bool)
        for c in calls
        for v in c["arguments"].values()
    ):
        kinds.append("invented_value")
    if len(specs) > 1:
        kinds.append("wrong_tool")
    if not kinds:
        return calls
    kind = rng.choice(kinds)
    calls = [dict(c, arguments=dict(c["arguments"])) for c in calls]
    if kind == "drop_required":
        c = rng.choice(
            [
                c
                for c in calls
                if set(specs[c["name"]]["parameters"].get("required", [])) & set(c["arguments"])
            ]
        )
        req = sorted(set(specs[c["name"]]["parameters"]["required"]) & set(c["arguments"]))
        del c["arguments"][rng.choice(req)]
    elif kind == "invented_value":
        cands = [
            (c, k)
            for c in calls
            for k, v in c["arguments"].items()
            if isinstance(v, str | int | float) and not isinstance(v, bool)
        ]
        c, k = rng.choice(cands)
        schema = specs[c["name"]]["parameters"]["properties"][k]
        hint = (p.get("hints", {}).get(c["name"]) or {}).get("params", {}).get(k)
        for _ in range(10):
            v = gen_value(schema, hint, rng)
            if v != c["arguments"][k]:
                c["arguments"][k] = v
                break
    else:
        c = rng.choice(calls)
        c["name"] = rng.choice(sorted(n for n in specs if n != c["name"]))
    return calls


@register_task(ASSISTANT_TASK)
def assistant_task(request: ChatRequest, rng: random.Random) -> str:
    p = request.payload or {}
    expect = p["expect"]
    if expect == "call":
        calls = [{"name": c["name"], "arguments": c["arguments"]} for c in p["planned"]]
        if rng.random() < float(p.get("slip_rate", 0.0)):
            calls = _slip(calls, p, rng)
        return render_calls([ToolCall(name=c["name"], arguments=c["arguments"]) for c in calls])
    if expect == "clarify":
        what = (p.get("omit_description") or words(p["omit"])).strip().rstrip(".")
        what = what[:1].lower() + what[1:]
        what = what[4:] if what.startswith("the ") else what
        return rng.choice(
            [
                "Could you tell me the {w}? I need it to continue.",
                "Before I do that, what is the {w}?",
                "I need one more detail: the {w}. Could you provide it?",
                "Which {w} should I use?",
                "Happy to help. What {w} would you like?",
                "Can you give me the {w} first?",
                "One thing is missing: what is the {w}?",
            ]
        ).format(w=what)
    if expect == "irrelevant":
        topics = ", ".join(p.get("capabilities", [])[:3]) or "the available tools"
        return rng.choice(
            [
                "Sorry, none of my tools can do that. I can help with {t}.",
                "I can't help with that request with the tools I have; they cover {t}.",
                "That is outside what I can do here. My tools handle {t}.",
                "Unfortunately I have no tool for that. I can assist with {t}.",
            ]
        ).format(t=topics)
    parts = []
    for r in p.get("results", []):
        try:
            value = json.loads(r["content"])
        except (json.JSONDecodeError, TypeError):
            value = r["content"]
        if isinstance(value, dict) and "error" in value:
            parts.append(f"{words(r['name'])} failed: {value['error']}")
            continue
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict) and isinstance(value.get("data"), dict):
            value = value["data"]
        shown = list(value.items())[:2] if isinstance(value, dict) else [("result", value)]
        parts.append(
            f"{words(r['name'])}: " + ", ".join(f"{words(k)} {format_value(v)}" for k, v in shown)
        )
    lead = rng.choice(["Here is what I found. ", "Done. ", "All set. "])
    return lead + "; ".join(parts) + "." if parts else "Done."


# --- tool ------------------------------------------------------------------------------


def _fill(schema: dict, hints: dict, provides: dict, rng: random.Random, give: bool) -> Any:
    t = schema.get("type")
    if t == "object" and schema.get("properties"):
        out = {}
        for k, s in schema["properties"].items():
            if give and k in provides:
                out[k] = provides[k]
            elif s.get("properties") or (
                s.get("type") == "array" and (s.get("items") or {}).get("properties")
            ):
                out[k] = _fill(s, hints, provides, rng, give)
            else:
                out[k] = gen_value(s, hints.get(k), rng)
        return out
    if t == "array" and (schema.get("items") or {}).get("properties"):
        return [
            _fill(schema["items"], hints, provides, rng, give and i == 0)
            for i in range(rng.randint(1, 3))
        ]
    return gen_value(schema, None, rng)


@register_task(TOOL_TASK)
def tool_task(request: ChatRequest, rng: random.Random) -> str:
    p = request.payload or {}
    planned = p.get("planned") or {}
    if planned.get("fails"):
        return _dump({"error": planned.get("error") or rng.choice(GENERIC_ERRORS)})
    returns = p.get("returns")
    if not returns:
        return _dump({"status": "ok", "result": f"{words(p['call']['name'])} completed"})
    return _dump(_fill(returns, p.get("hints") or {}, planned.get("provides") or {}, rng, True))


# --- verification (template implementation of the second tier) --------------------------


@register_choice_task(VERIFY_CHOICE_TASK)
def verify_choice(request: ChoiceRequest, rng: random.Random) -> str:
    return "FAIL" if intent_problems(request.payload or {}) else "PASS"


@register_task(VERIFY_REASON_TASK)
def verify_reason(request: ChatRequest, rng: random.Random) -> str:
    return "; ".join(intent_problems(request.payload or {})) or "no problem found"
