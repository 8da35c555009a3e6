"""Four-agent dialogue simulation: Planner, User, Assistant, Tool.

Each agent is a request to an engine: LLM backends read the agent's prompt
(``looptool/prompts/seed_<agent>.txt``); the template backend reads the structured
payload (:mod:`looptool.seed.templates`). A dialogue is a Python generator that yields
one (agent, request) at a time and receives the generated text; :func:`simulate` runs
all dialogues in lockstep so every round is one batched engine call per agent, and the
request cache (LLM backends) makes a killed run resume without repeating calls.

Tools may also be real Python functions: :func:`register_executor` makes the Tool agent
run them instead of simulating results.

The dialogues to simulate are drawn in :mod:`looptool.seed.dialogue_draw`; the agents'
task names and the user's prompt pieces live in :mod:`looptool.seed.roles`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from looptool.core.codec import parse_completion
from looptool.core.types import Message, ToolCall, canonical_json, content_hash
from looptool.engines.base import ChatRequest, Engine, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.prompts import load_prompt
from looptool.seed.dialogue_draw import DialogueSpec
from looptool.seed.jsontext import extract_json
from looptool.seed.plan import Plan, PlanCall, find_chains, parse_plan
from looptool.seed.roles import AGENTS, ROLE_TASKS, transcript, user_goal

Executor = Callable[[dict], Any]
_EXECUTORS: dict[str, Executor] = {}


def register_executor(name: str, fn: Executor) -> None:
    """Run ``fn(arguments) -> JSON value`` for calls to tool ``name`` instead of simulating."""
    _EXECUTORS[name] = fn


def unregister_executor(name: str) -> None:
    _EXECUTORS.pop(name, None)


@dataclass
class SimConfig:
    tool_error_rate: float = 0.08
    slip_rate: float = 0.05
    max_messages: int = 40
    max_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGENTS, 384))
    temperature: float = 0.7
    chat_template_kwargs: dict | None = None


# --- request builders -------------------------------------------------------------------


class AgentSet:
    """The engine serving each agent, and request building for each."""

    def __init__(self, engines: dict[str, Engine], cfg: SimConfig):
        missing = [a for a in AGENTS if a not in engines]
        if missing:
            raise ValueError(f"no engine for agents {missing}")
        self.engines = engines
        self.cfg = cfg

    def is_template(self, agent: str) -> bool:
        return self.engines[agent].backend == "template"

    def request(
        self,
        agent: str,
        d: DialogueSpec,
        step_no: int,
        prompt_messages: list[dict],
        payload: dict,
        tools: list[dict] | None = None,
    ) -> ChatRequest:
        tmpl = self.is_template(agent)
        # Per-request seed: varies by dialogue and position so sampled LLM outputs differ
        # across dialogues, yet a rerun sends byte-identical requests (cache hits).
        seed = int(content_hash({"s": d.seed, "d": d.dialogue_id, "a": agent, "n": step_no}, 8), 16)
        return ChatRequest(
            messages=prompt_messages,
            tools=None if tmpl else tools,
            params=SamplingParams(
                max_tokens=self.cfg.max_tokens[agent],
                temperature=0.0 if tmpl else self.cfg.temperature,
                seed=seed,
            ),
            chat_template_kwargs=None if tmpl else self.cfg.chat_template_kwargs,
            task=ROLE_TASKS[agent],
            payload=payload if tmpl else None,
        )


# --- one dialogue ------------------------------------------------------------------------

Yield = tuple[str, ChatRequest]


def _flow(d: DialogueSpec, agents: AgentSet) -> Generator[Yield, str, dict]:
    """One dialogue, turn by turn. Returns {"plan", "messages", "acts"} or {"reject": ...}."""
    cfg = agents.cfg
    entries = d.entries()
    tools = {t.name: t for t in d.tools}
    openai_tools = [t.to_openai() for t in tools.values()]
    hints = {e["spec"]["name"]: e["hints"] or {} for e in entries}
    by_name = {e["spec"]["name"]: e for e in entries}
    n_req = 0

    def req(agent: str, prompt: list[dict], payload: dict, with_tools: bool = False) -> ChatRequest:
        nonlocal n_req
        n_req += 1
        return agents.request(
            agent, d, n_req, prompt, payload, openai_tools if with_tools else None
        )

    shown = [{"function": e["spec"], "returns": e["returns"]} for e in entries]
    chains = find_chains(entries)
    chain_hint = "".join(
        f' Here "{a}" returns "{key}", which "{b}" takes as "{param}".'
        for a, key, b, param in chains[:3]
    )
    prompt = load_prompt("seed_planner").format(
        tools=json.dumps(shown, ensure_ascii=False),
        n_turns=len(d.kinds),
        kinds=", ".join(d.kinds),
        chain_hint=chain_hint,
    )
    text = yield (
        "planner",
        req(
            "planner",
            [{"role": "user", "content": prompt}],
            {
                "tools": entries,
                "kinds": d.kinds,
                "offtopic": d.offtopic,
                "tool_error_rate": cfg.tool_error_rate,
            },
        ),
    )
    plan, err = parse_plan(text, tools, d.kinds, {n: e["returns"] for n, e in by_name.items()})
    if plan is None:
        return {"reject": ("plan", err, {"planner_output": text})}
    messages: list[Message] = []
    acts: list[dict | None] = []

    def user_turn(t: int, mode: str) -> Generator[Yield, str, None]:
        turn = plan.turns[t]
        goal, details = user_goal(turn, mode)
        body = load_prompt("seed_user").format(
            goal=goal, details=details + "\nConversation so far:\n" + transcript(messages)
        )
        out = yield (
            "user",
            req(
                "user",
                [{"role": "user", "content": body}],
                {
                    "turn": turn.model_dump(mode="json"),
                    "mode": mode,
                    "first": not messages,
                    "hints": hints,
                    "descriptions": {n: e["spec"].get("description") for n, e in by_name.items()},
                },
            ),
        )
        messages.append(Message(role="user", content=parse_completion(out).text or out.strip()))
        acts.append(None)

    def assistant_turn(
        t: int, s: int | None, expect: str, planned: list[PlanCall], results: list[dict]
    ) -> Generator[Yield, str, Message]:
        turn = plan.turns[t]
        omit_desc = None
        if turn.omit and turn.steps:
            spec = tools.get(turn.steps[0][0].name)
            omit_desc = spec.properties.get(turn.omit, {}).get("description") if spec else None
        payload = {
            "expect": expect,
            "planned": [c.model_dump(mode="json") for c in planned],
            "omit": turn.omit,
            "omit_description": omit_desc,
            "results": results,
            "capabilities": sorted({(h.get("object") or n) for n, h in hints.items()}),
            "tools": {n: tl.to_json() for n, tl in tools.items()},
            "hints": hints,
            "slip_rate": cfg.slip_rate,
        }
        system = {"role": "system", "content": load_prompt("seed_assistant").strip()}
        out = yield (
            "assistant",
            req("assistant", [system, *[m.to_openai() for m in messages]], payload, True),
        )
        parsed = parse_completion(out)
        act: dict[str, Any] = {"turn": t, "step": s, "expect": expect}
        if parsed.error is not None:
            msg = Message(role="assistant", content=out)
            act.update(act="invalid", error=parsed.error.message)
        elif parsed.calls:
            msg = Message(role="assistant", content=parsed.text, tool_calls=parsed.calls)
            act["act"] = "call"
        else:
            msg = Message(role="assistant", content=parsed.text)
            act["act"] = expect if expect != "call" else "text"
        messages.append(msg)
        acts.append(act)
        return msg

    def run_tools(
        calls: list[ToolCall], planned: list[PlanCall]
    ) -> Generator[Yield, str, list[dict]]:
        unused = list(planned)
        results = []
        for call in calls:
            match = next(
                (p for p in unused if p.name == call.name and p.arguments == call.arguments), None
            )
            match = match or next((p for p in unused if p.name == call.name), None)
            if match is not None:
                unused.remove(match)
            if call.name in _EXECUTORS:
                try:
                    value = _EXECUTORS[call.name](dict(call.arguments))
                    content = canonical_json(value)
                except Exception as exc:  # a failing real tool is a result, not a crash
                    content = canonical_json({"error": f"{type(exc).__name__}: {exc}"})
            elif call.name not in tools:
                content = canonical_json({"error": f"unknown function {call.name}"})
            else:
                e = by_name[call.name]
                instruction = ""
                if match is not None and match.fails:
                    instruction = f'Simulate a failure: reply {{"error": "{match.error or "request failed"}"}}.'
                elif match is not None and match.provides:
                    instruction = (
                        f"Use these values in the result: {canonical_json(match.provides)}."
                    )
                body = load_prompt("seed_tool").format(
                    instruction=instruction,
                    spec=canonical_json(e["spec"]),
                    returns=canonical_json(e["returns"]),
                    call=canonical_json(call.to_json()),
                )
                out = yield (
                    "tool",
                    req(
                        "tool",
                        [{"role": "user", "content": body}],
                        {
                            "call": call.to_json(),
                            "returns": e["returns"],
                            "hints": (e["hints"] or {}).get("returns", {}),
                            "planned": match.model_dump(mode="json") if match else None,
                        },
                    ),
                )
                value, err = extract_json(out, (dict, list))
                content = canonical_json(value) if err is None else out.strip()
            messages.append(Message(role="tool", name=call.name, content=content))
            acts.append(None)
            results.append({"name": call.name, "content": content})
        return results

    for t, turn in enumerate(plan.turns):
        yield from user_turn(t, "request")
        if turn.kind == "irrelevant":
            msg = yield from assistant_turn(t, None, "irrelevant", [], [])
            if msg.tool_calls:
                yield from run_tools(msg.tool_calls, [])
            continue
        if turn.kind == "clarify":
            msg = yield from assistant_turn(t, None, "clarify", turn.steps[0], [])
            if msg.tool_calls:
                yield from run_tools(msg.tool_calls, [])
            yield from user_turn(t, "provide")
        results: list[dict] = []
        for s, step in enumerate(turn.steps):
            msg = yield from assistant_turn(t, s, "call", step, [])
            if not msg.tool_calls:
                break  # the assistant did not follow the plan; verification will say so
            results += yield from run_tools(msg.tool_calls, step)
        yield from assistant_turn(t, None, "answer", [], results)
        if len(messages) > cfg.max_messages:
            return {
                "reject": (
                    "length",
                    f"dialogue exceeded {cfg.max_messages} messages",
                    {"messages": [m.to_json() for m in messages]},
                )
            }
    return {"plan": plan, "messages": messages, "acts": acts}


def simulate(specs: list[DialogueSpec], agents: AgentSet) -> list[dict]:
    """Run every dialogue to completion in lockstep rounds; results in input order."""
    import looptool.seed.templates  # noqa: F401  (registers the template tasks)

    flows = {d.index: _flow(d, agents) for d in specs}
    pending: dict[int, Yield] = {}
    results: dict[int, dict] = {}

    def advance(key: int, value: str | None) -> None:
        try:
            pending[key] = flows[key].send(value)  # type: ignore[arg-type]
        except StopIteration as stop:
            pending.pop(key, None)
            results[key] = stop.value

    for key in flows:
        advance(key, None)
    while pending:
        for agent in AGENTS:
            batch = [(k, r) for k, (a, r) in pending.items() if a == agent]
            if not batch:
                continue
            outs = agents.engines[agent].generate([r for _, r in batch])
            for (k, _), gens in zip(batch, outs, strict=True):
                if isinstance(gens, Failed):
                    # the dialogue cannot go on without this turn: it ends as a reject
                    flows[k].close()
                    pending.pop(k)
                    reject = (ENGINE_FAILED, f"{agent} {failure_note(gens)}", {})
                    results[k] = {"reject": reject}
                    continue
                advance(k, gens[0].text)
    return [results[d.index] for d in specs]


def plan_json(plan: Plan) -> str:
    return canonical_json(plan.model_dump(mode="json"))
