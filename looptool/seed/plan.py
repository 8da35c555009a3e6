"""The dialogue plan the Planner agent writes, and its validation against the tools.

A plan is a list of user turns. Each turn has a kind (drawn before planning; the turn's
shape decides it), the calls the assistant should make as steps (a step = calls made
together; two steps = the second depends on the first), the value flow between steps
(a later call ``uses`` a result field an earlier call ``provides``), the value the user
leaves out (clarify), or an out-of-scope request (irrelevant).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from looptool.core.rules import check_calls
from looptool.core.types import ToolCall, ToolSpec
from looptool.seed.jsontext import extract_json

TurnKind = Literal["single", "parallel", "multi_step", "clarify", "irrelevant"]
TURN_KINDS: tuple[str, ...] = ("single", "parallel", "multi_step", "clarify", "irrelevant")


class PlanCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    fails: bool = False  # the simulated tool returns an error result
    error: str | None = None
    provides: dict[str, Any] = Field(default_factory=dict)  # result key -> value a later step uses
    uses: dict[str, str] = Field(default_factory=dict)  # argument -> "step<k>.<result key>"

    def call(self) -> ToolCall:
        return ToolCall(name=self.name, arguments=self.arguments)


class PlanTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: TurnKind
    request: str = ""
    omit: str | None = None
    steps: list[list[PlanCall]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, v: Any) -> Any:
        """Forgive what does not change a plan's meaning: a written kind is replaced by the
        turn's shape anyway (:func:`structural_kind`), a bare call stands for a step of one,
        an empty ``omit`` means none."""
        if not isinstance(v, dict):
            return v
        v = dict(v)
        if v.get("kind") not in TURN_KINDS:
            v["kind"] = "single"
        if isinstance(v.get("steps"), list):
            v["steps"] = [[s] if isinstance(s, dict) else s for s in v["steps"]]
        if v.get("omit") in ("", "null", "none"):
            v["omit"] = None
        return v

    def omitted_value(self) -> Any:
        if self.omit is None or not self.steps or not self.steps[0]:
            return None
        return self.steps[0][0].arguments.get(self.omit)


class Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    turns: list[PlanTurn] = Field(min_length=1)


def structural_kind(turn: PlanTurn) -> str:
    """The kind a turn's shape makes it, whatever kind the planner wrote: no steps =
    irrelevant, an omitted value = clarify, 2+ steps = multi_step, one step of 2+ calls =
    parallel, else single."""
    if not turn.steps:
        return "irrelevant"
    if turn.omit is not None:
        return "clarify"
    if len(turn.steps) >= 2:
        return "multi_step"
    return "parallel" if len(turn.steps[0]) >= 2 else "single"


PLAN_REJECT_CLASSES = ("json", "plan", "kinds", "calls", "shape", "chain", "clarify", "irrelevant")
_REF = re.compile(r"^step(\d+)\.(.+)$")


def _chain_problems(
    where: str,
    turn: PlanTurn,
    tools: dict[str, ToolSpec],
    returns: dict[str, dict | None],
    chainable: bool,
) -> list[str]:
    """Value flow inside one turn: every ``uses`` names an argument of its call and a result
    field of a call in an earlier step, whose ``provides`` holds the same value (either side
    may be left out and is filled from the other). A multi_step turn needs at least one
    when the tools allow one (``chainable``)."""
    from looptool.seed.apis import record_props

    problems: list[str] = []
    links = 0
    for s, step in enumerate(turn.steps):
        for call in step:
            spec = tools.get(call.name)
            for param, ref in call.uses.items():
                m = _REF.match(ref.strip())
                if m is None or int(m.group(1)) >= s:
                    problems.append(
                        f"chain: {where} step {s}: {call.name}.{param} uses {ref!r}, "
                        "not 'step<k>.<result field>' of an earlier step"
                    )
                    continue
                if spec is not None and param not in spec.properties:
                    problems.append(
                        f"chain: {where} step {s}: {call.name} has no parameter {param!r}"
                    )
                    continue
                k, key = int(m.group(1)), m.group(2)
                producers = [
                    p
                    for p in turn.steps[k]
                    if key in p.provides
                    or returns.get(p.name) is None
                    or key in record_props(returns.get(p.name))
                ]
                if not producers:
                    problems.append(f"chain: {where} step {s}: no call of step {k} returns {key!r}")
                    continue
                prod = next((p for p in producers if key in p.provides), producers[0])
                if prod.fails:
                    problems.append(
                        f"chain: {where} step {s}: {prod.name} provides {key!r} but is planned to fail"
                    )
                    continue
                if param not in call.arguments and key not in prod.provides:
                    problems.append(
                        f"chain: {where} step {s}: no value for {call.name}.{param} "
                        f"(neither the argument nor step {k}'s provides gives it)"
                    )
                    continue
                call.arguments.setdefault(param, prod.provides.get(key))
                prod.provides.setdefault(key, call.arguments[param])
                if prod.provides[key] != call.arguments[param]:
                    problems.append(
                        f"chain: {where} step {s}: {call.name}.{param} is "
                        f"{call.arguments[param]!r} but step {k} provides {key}="
                        f"{prod.provides[key]!r}"
                    )
                    continue
                links += 1
    if turn.kind == "multi_step" and chainable and not links and not problems:
        problems.append(
            f"chain: {where}: the tools let a result feed a later call, but no call 'uses' "
            "a value an earlier step 'provides'"
        )
    return problems


def validate_plan(
    plan: Plan,
    tools: dict[str, ToolSpec],
    kinds: list[str],
    returns: dict[str, dict | None] | None = None,
) -> list[str]:
    """Problems that make a plan unusable (empty list: fine), each prefixed with its class
    (``kinds:``, ``calls:``, ``shape:``, ``chain:``, ``clarify:``, ``irrelevant:``).

    The plan must meet the drawn constraints, not repeat one sequence: as many turns as
    drawn, the same kinds in any order, each turn's kind the one its shape makes it
    (:func:`structural_kind`; a turn's written kind is replaced by it), valid calls, and
    a value flow (``uses`` / ``provides``) in every multi_step turn whose tools allow one
    (:func:`find_chains`). Fills the side of a value flow the planner left out, so the plan
    is changed in place."""
    returns = returns or {}
    chainable = bool(
        find_chains([{"spec": t.to_json(), "returns": returns.get(n)} for n, t in tools.items()])
    )
    for turn in plan.turns:
        turn.kind = structural_kind(turn)  # type: ignore[assignment]
    got = sorted(t.kind for t in plan.turns)
    if got != sorted(kinds):
        return [f"kinds: plan turns are {got}, the drawn kinds (any order) {sorted(kinds)}"]
    problems: list[str] = []
    for i, turn in enumerate(plan.turns):
        where = f"turn {i} ({turn.kind})"
        if turn.kind == "irrelevant":
            if not turn.request.strip():
                problems.append(f"irrelevant: {where}: missing the out-of-scope request")
            continue
        if any(not step for step in turn.steps):
            problems.append(f"shape: {where}: an empty step")
            continue
        # before the schema check: the chain check fills values left to the other side
        problems += _chain_problems(where, turn, tools, returns, chainable)
        for s, step in enumerate(turn.steps):
            for v in check_calls([c.call() for c in step], tools):
                problems.append(
                    f"calls: {where} step {s}: {v.name}: {v.rule} {v.param}: {v.message}"
                )
        if turn.kind == "clarify":
            n_calls = [len(s) for s in turn.steps]
            first = turn.steps[0][0]
            spec = tools.get(first.name)
            if n_calls != [1]:
                problems.append(f"clarify: {where}: needs exactly one call, got steps of {n_calls}")
            elif turn.omit not in first.arguments:
                problems.append(f"clarify: {where}: 'omit' must name an argument of the call")
            elif spec is not None and turn.omit not in spec.required:
                problems.append(
                    f"clarify: {where}: omitted {turn.omit!r} is not a required parameter"
                )
    return problems


def parse_plan(
    text: str,
    tools: dict[str, ToolSpec],
    kinds: list[str],
    returns: dict[str, dict | None] | None = None,
) -> tuple[Plan | None, str | None]:
    """Parse and validate planner output: (plan, None) or (None, reason); a reason starts
    with its class (``json:``, ``plan:`` or a :func:`validate_plan` class)."""
    obj, err = extract_json(text)
    if err is not None:
        return None, f"json: planner output: {err}"
    try:
        plan = Plan.model_validate(obj)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        return None, f"plan: planner output is not a valid plan: {loc}: {e['msg']}"
    problems = validate_plan(plan, tools, kinds, returns)
    if problems:
        return None, "; ".join(problems[:3])
    return plan, None


def reject_class(reason: str) -> str:
    """The class a :func:`parse_plan` reason starts with."""
    head = reason.split(":", 1)[0]
    return head if head in PLAN_REJECT_CLASSES else "other"


def find_chains(entries: list[dict]) -> list[tuple[str, str, str, str]]:
    """(producer, result key, consumer, parameter) pairs where one tool's result field
    feeds another tool's string parameter of the same canonical name.

    ``entries`` are ``{"spec": tool json, "returns": schema or None}``.
    """
    from looptool.seed.apis import record_props
    from looptool.seed.values import snake

    out = []
    for a in entries:
        keys = {snake(k): k for k in record_props(a.get("returns"))}
        for b in entries:
            if b is a:
                continue
            props = b["spec"].get("parameters", {}).get("properties", {})
            for p, schema in props.items():
                # identifiers only: chaining a free-text field would read unnaturally
                canon = snake(p)
                if schema.get("type") == "string" and canon.endswith("id") and canon in keys:
                    out.append((a["spec"]["name"], keys[canon], b["spec"]["name"], p))
    return out
