"""Two-tier verification of simulated dialogues.

Tier 1, rules (:func:`rule_problems`): the assistant calls exactly where the plan has
calls (no text in place of a planned call, no call where the plan expects a
clarification, a refusal or an answer); every assistant call parses and round-trips
through the codec, names a tool of the dialogue, passes the schema rules
(:func:`looptool.core.rules.check_calls`: required params, types, enums, unknown
params); every call gets exactly one tool result, in order, with the same name; results
are JSON and conform to the API's result schema (or are an ``{"error": ...}`` result);
the chain rule (:func:`chain_problems`): a value a call ``uses`` from an earlier result
comes from a tool result, never from the user.

Tier 2, intent: each assistant step that becomes a sample is checked for fit with the
user's intent. With an LLM judge (hf / vllm / openai) it is a constrained PASS/FAIL
choice on a prompt (``seed_verify.txt``) plus an optional one-sentence reason. With the
template backend it is :func:`looptool.seed.intent.intent_problems`, a programmatic
check that is honest about what it is: the chosen tool is the one the plan intended, every argument value
appears in the conversation before the step (user turns or earlier tool results;
booleans are exempt), no planned value that the conversation states is replaced or left
out, and no-call steps happen where the plan has them. Tier name in rejects: ``llm`` for a model judge, ``intent`` for the
template check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jsonschema

from looptool.core.codec import parse_completion, render_calls
from looptool.core.rules import check_calls
from looptool.core.types import Message, ToolSpec, canonical_json
from looptool.engines.base import ChatRequest, ChoiceRequest, Engine, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.prompts import load_prompt
from looptool.seed.roles import OPTIONS, VERIFY_CHOICE_TASK, VERIFY_REASON_TASK, render_step
from looptool.seed.values import appears_in, scalar_leaves


def rule_problems(
    tools: list[ToolSpec],
    messages: list[Message],
    acts: list[dict | None],
    returns: dict[str, dict | None],
    open_end: bool = False,
) -> list[str]:
    """Tier-1 problems of one dialogue (empty: passes). ``open_end``: the dialogue may
    stop at its last calls without their results (imported records such as xLAM or BFCL
    end at the labelled step)."""
    by_name = {t.name: t for t in tools}
    problems: list[str] = []
    if not messages or messages[0].role != "user":
        problems.append("dialogue does not start with a user message")
    i = 0
    while i < len(messages):
        m, act = messages[i], acts[i] or {}
        if m.role == "tool":
            problems.append(f"message {i}: tool result without a preceding call")
        if m.role == "user" and not m.content.strip():
            problems.append(f"message {i}: empty user message")
        if m.role != "assistant":
            i += 1
            continue
        if act.get("act") == "invalid":
            problems.append(f"message {i}: unparseable tool call ({act.get('error')})")
        # plan conformance: whether a step calls at all is fixed by the plan
        if act.get("act") == "text":
            problems.append(
                f"message {i}: the plan calls tools here, the assistant replied without a call"
            )
        if act.get("act") == "call" and act.get("expect") != "call":
            problems.append(
                f"message {i}: the plan expects no call here ({act.get('expect')}), "
                f"the assistant called {[c.name for c in m.tool_calls]}"
            )
        if not m.tool_calls:
            if not m.content.strip():
                problems.append(f"message {i}: empty assistant message")
            i += 1
            continue
        round_trip = parse_completion(render_calls(m.tool_calls))
        if not round_trip.ok or [c.to_json() for c in round_trip.calls] != [
            c.to_json() for c in m.tool_calls
        ]:
            problems.append(f"message {i}: calls do not survive the tool-call codec")
        for v in check_calls(m.tool_calls, by_name):
            problems.append(f"message {i}: call {v.call_index} to {v.name}: {v.rule}: {v.message}")
        results = messages[i + 1 : i + 1 + len(m.tool_calls)]
        if open_end and i == len(messages) - 1:
            break
        if len(results) < len(m.tool_calls) or any(r.role != "tool" for r in results):
            problems.append(f"message {i}: {len(m.tool_calls)} calls but fewer tool results follow")
        for j, (call, res) in enumerate(zip(m.tool_calls, results, strict=False)):
            if res.role != "tool":
                break
            if res.name != call.name:
                problems.append(
                    f"message {i + 1 + j}: result of {res.name!r} answers a call to {call.name!r}"
                )
                continue
            problems.extend(
                _result_problems(i + 1 + j, call.name, res.content, returns.get(call.name))
            )
        i += 1 + sum(1 for r in results if r.role == "tool")
    return problems


def chain_problems(plan: dict, messages: list[Message], acts: list[dict | None]) -> list[str]:
    """The chain rule, for every backend: an argument the plan ``uses`` from an earlier
    step's result must come from a tool result before the call and must not have been
    stated by the user (else the chain collapsed into a single-step request)."""
    problems: list[str] = []
    for i, act in enumerate(acts):
        if not act or act.get("act") != "call" or act.get("step") is None:
            continue
        steps = plan["turns"][act["turn"]].get("steps") or []
        planned = steps[act["step"]] if act["step"] < len(steps) else []
        said = "\n".join(m.content for m in messages[:i] if m.role == "user")
        results = "\n".join(m.content for m in messages[:i] if m.role == "tool")
        for p in planned:
            call = next((c for c in messages[i].tool_calls if c.name == p["name"]), None)
            for param, ref in (p.get("uses") or {}).items():
                if call is None or param not in call.arguments:
                    continue
                value = call.arguments[param]
                leaves = [x for x in scalar_leaves(value) if not isinstance(x, bool)]
                where = f"message {i}: {call.name}.{param}={canonical_json(value)}"
                if any(appears_in(x, said) for x in leaves):
                    problems.append(f"{where} was stated by the user but should come from {ref}")
                elif not all(appears_in(x, results) for x in leaves):
                    problems.append(f"{where} does not come from an earlier result ({ref})")
    return problems


def _result_problems(idx: int, name: str, content: str, schema: dict | None) -> list[str]:
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return [f"message {idx}: result of {name} is not JSON"]
    if isinstance(value, dict) and set(value) == {"error"} and isinstance(value["error"], str):
        return []  # an error result is a legitimate outcome, kept (never dropped)
    if schema is None:
        return []
    err = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if err is not None:
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        return [
            f"message {idx}: result of {name} does not match its result schema at {path}: {err.message}"
        ]
    return []


# --- tier 2 ------------------------------------------------------------------------------


@dataclass
class Step:
    """One assistant step to check: where it is and what the plan meant there."""

    dialogue_id: str
    message_index: int
    payload: dict  # conversation, message, act, plan turn/step (JSON-ready)


def steps_to_check(
    dialogue_id: str,
    plan: dict,
    messages: list[Message],
    acts: list[dict | None],
    acts_checked: set[str],
) -> list[Step]:
    out = []
    for i, act in enumerate(acts):
        if not act or act.get("act") not in acts_checked:
            continue
        turn = plan["turns"][act["turn"]]
        out.append(
            Step(
                dialogue_id,
                i,
                {
                    "act": act["act"],
                    "step": act.get("step"),
                    "turn": turn,
                    "context": [m.to_json() for m in messages[:i]],
                    "message": messages[i].to_json(),
                },
            )
        )
    return out


def judge_steps(
    steps: list[Step],
    engine: Engine,
    tools_by_dialogue: dict[str, list[ToolSpec]],
    reasons: bool,
    max_tokens: int = 96,
) -> list[tuple[str, str]]:
    """(verdict, reason) per step, through one batched choose (+ generate for reasons);
    verdict ``engine_failed`` where the judge's request failed."""
    import looptool.seed.templates  # noqa: F401  (registers the template tasks)

    tmpl = engine.backend == "template"
    choose, texts = [], []
    for s in steps:
        intent, conv, step = render_step(s.payload)
        tools = "\n".join(canonical_json(t.to_json()) for t in tools_by_dialogue[s.dialogue_id])
        body = load_prompt("seed_verify").format(
            tools=tools, intent=intent, conversation=conv, step=step
        )
        texts.append((intent, conv, step))
        choose.append(
            ChoiceRequest(
                messages=[{"role": "user", "content": body}],
                options=OPTIONS,
                task=VERIFY_CHOICE_TASK,
                payload=s.payload if tmpl else None,
                chat_template_kwargs=None if tmpl else {"enable_thinking": False},
            )
        )
    verdicts = engine.choose(choose) if choose else []
    # A step whose request failed cannot be verified: verdict engine_failed (the dialogue
    # is rejected like a FAIL) with the reason.
    out = [(ENGINE_FAILED, failure_note(v)) if isinstance(v, Failed) else (v, "") for v in verdicts]
    failed = [i for i, v in enumerate(verdicts) if v == "FAIL"]
    if failed and (reasons or tmpl):
        reqs = []
        for i in failed:
            intent, conv, step = texts[i]
            reqs.append(
                ChatRequest(
                    messages=[
                        {
                            "role": "user",
                            "content": load_prompt("seed_verify_reason").format(
                                intent=intent, conversation=conv, step=step
                            ),
                        }
                    ],
                    params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
                    task=VERIFY_REASON_TASK,
                    payload=steps[i].payload if tmpl else None,
                    chat_template_kwargs=None if tmpl else {"enable_thinking": False},
                )
            )
        for i, gens in zip(failed, engine.generate(reqs), strict=True):
            if isinstance(gens, Failed):
                out[i] = ("FAIL", f"(no reason: {failure_note(gens)})")
                continue
            reason = " ".join(parse_completion(gens[0].text).text.split())[:300]
            out[i] = ("FAIL", reason or "(the judge gave no reason)")
    return out
