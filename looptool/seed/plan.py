"""The dialogue plan the Planner agent writes, and its validation against the tools.

A plan is a list of user turns. Each turn has a kind (drawn before planning), the calls
the assistant should make as steps (a step = calls made together; two steps = the second
depends on the first), the value the user leaves out (clarify), or an out-of-scope
request (irrelevant).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

    def omitted_value(self) -> Any:
        if self.omit is None or not self.steps or not self.steps[0]:
            return None
        return self.steps[0][0].arguments.get(self.omit)


class Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    turns: list[PlanTurn] = Field(min_length=1)


def validate_plan(plan: Plan, tools: dict[str, ToolSpec], kinds: list[str]) -> list[str]:
    """Problems that make a plan unusable (empty list: fine)."""
    got = [t.kind for t in plan.turns]
    if got != list(kinds):
        return [f"plan turn kinds {got} differ from the requested {list(kinds)}"]
    problems: list[str] = []
    for i, turn in enumerate(plan.turns):
        where = f"turn {i} ({turn.kind})"
        if turn.kind == "irrelevant":
            if turn.steps:
                problems.append(f"{where}: an irrelevant request must have no calls")
            if not turn.request.strip():
                problems.append(f"{where}: missing the out-of-scope request")
            continue
        if not turn.steps or any(not step for step in turn.steps):
            problems.append(f"{where}: needs at least one non-empty step")
            continue
        for s, step in enumerate(turn.steps):
            for v in check_calls([c.call() for c in step], tools):
                problems.append(f"{where} step {s}: {v.name}: {v.rule} {v.param}: {v.message}")
        n_calls = [len(s) for s in turn.steps]
        if turn.kind in ("single", "clarify") and n_calls != [1]:
            problems.append(f"{where}: needs exactly one call, got steps of {n_calls}")
        if turn.kind == "parallel" and (len(n_calls) != 1 or n_calls[0] < 2):
            problems.append(f"{where}: needs one step with 2+ calls, got steps of {n_calls}")
        if turn.kind == "multi_step" and len(n_calls) < 2:
            problems.append(f"{where}: needs 2+ dependent steps, got {len(n_calls)}")
        if turn.kind == "clarify":
            first = turn.steps[0][0]
            spec = tools.get(first.name)
            if turn.omit is None or turn.omit not in first.arguments:
                problems.append(f"{where}: 'omit' must name an argument of the call")
            elif spec is not None and turn.omit not in spec.required:
                problems.append(f"{where}: omitted {turn.omit!r} is not a required parameter")
    return problems


def parse_plan(
    text: str, tools: dict[str, ToolSpec], kinds: list[str]
) -> tuple[Plan | None, str | None]:
    """Parse and validate planner output: (plan, None) or (None, reason)."""
    obj, err = extract_json(text)
    if err is not None:
        return None, f"planner output: {err}"
    try:
        plan = Plan.model_validate(obj)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        return None, f"planner output is not a valid plan: {loc}: {e['msg']}"
    problems = validate_plan(plan, tools, kinds)
    if problems:
        return None, "invalid plan: " + "; ".join(problems[:3])
    return plan, None


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
