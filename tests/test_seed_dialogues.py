"""Four-agent simulation (template backend), plans, and both verification tiers."""

from __future__ import annotations

import json

import pytest

import looptool.seed.templates  # noqa: F401  (registers the template tasks)
from looptool.core.types import Message, ToolCall, ToolSpec
from looptool.engines.backends.template import TemplateEngine
from looptool.engines.base import SamplingParams
from looptool.seed.agents import (
    AgentSet,
    SimConfig,
    register_executor,
    simulate,
    unregister_executor,
)
from looptool.seed.apis import api_request, build_pool, draw_apis
from looptool.seed.dialogue_draw import draw_dialogues
from looptool.seed.intent import intent_problems
from looptool.seed.plan import parse_plan
from looptool.seed.roles import AGENTS
from looptool.seed.trees import load_trees
from looptool.seed.verify import judge_steps, rule_problems, steps_to_check

MIX = {"single": 1, "parallel": 1, "multi_step": 1, "clarify": 1, "irrelevant": 1}


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    trees = load_trees("data/trees/context_tree.yaml", "data/trees/constraint_tree.yaml")
    draws = draw_apis(trees, 160, seed=0)
    reqs = [api_request(d, trees, True, SamplingParams(max_tokens=16)) for d in draws]
    rows, _ = build_pool(draws, [g[0].text for g in TemplateEngine().generate(reqs)], trees)
    return rows


def _agents(slip: float = 0.0, error_rate: float = 0.1) -> AgentSet:
    eng = TemplateEngine()
    return AgentSet(
        dict.fromkeys(AGENTS, eng), SimConfig(tool_error_rate=error_rate, slip_rate=slip)
    )


def _specs(pool, n=30, seed=0):
    return draw_dialogues(pool, n, seed, (2, 4), (1, 3), MIX, 0.3)


def _steps(specs, results) -> list:
    """Every assistant step of simulated dialogues, as seed_verify's intent tier gets them."""
    steps = []
    for spec, res in zip(specs, results, strict=True):
        steps += steps_to_check(
            spec.dialogue_id,
            res["plan"].model_dump(mode="json"),
            res["messages"],
            res["acts"],
            {"call", "clarify", "irrelevant"},
        )
    return steps


def _check(spec, res):
    tools = spec.tools
    returns = {a["name"]: json.loads(a["returns"]) if a["returns"] else None for a in spec.apis}
    return rule_problems(tools, res["messages"], res["acts"], returns)


def test_simulation_is_deterministic_and_well_formed(pool):
    specs = _specs(pool)
    a = simulate(specs, _agents())
    b = simulate(_specs(pool), _agents())
    dump = [[m.to_json() for m in r["messages"]] for r in a]
    assert dump == [[m.to_json() for m in r["messages"]] for r in b]
    kinds = set()
    for spec, res in zip(specs, a, strict=True):
        assert "reject" not in res, res.get("reject")
        assert [t.kind for t in res["plan"].turns] == spec.kinds
        assert res["messages"][0].role == "user"
        assert _check(spec, res) == []
        kinds |= {act["act"] for act in res["acts"] if act}
        assert len({a["context_path"] for a in spec.apis}) == len(spec.apis)  # one API per leaf
    assert {"call", "clarify", "irrelevant", "answer"} <= kinds


def test_template_intent_check_passes_clean_dialogues(pool):
    specs = _specs(pool)
    steps = _steps(specs, simulate(specs, _agents()))
    verdicts = judge_steps(steps, TemplateEngine(), {s.dialogue_id: s.tools for s in specs}, True)
    fails = [r for v, r in verdicts if v == "FAIL"]
    assert len(steps) > 60 and len(fails) <= len(steps) // 20, fails


def test_slips_are_caught_by_one_tier_or_the_other(pool):
    specs = _specs(pool, n=20, seed=3)
    results = simulate(specs, _agents(slip=1.0))
    caught = with_calls = 0
    for spec, res in zip(specs, results, strict=True):
        problems = _check(spec, res)
        steps = steps_to_check(
            spec.dialogue_id,
            res["plan"].model_dump(mode="json"),
            res["messages"],
            res["acts"],
            {"call"},
        )
        intent = [intent_problems(s.payload) for s in steps]
        with_calls += bool(steps)
        caught += bool(problems or any(intent))
    assert with_calls >= 15 and caught == with_calls


def test_real_executor_replaces_the_simulated_tool(pool):
    specs = _specs(pool, n=10)
    first = simulate(specs[:1], _agents())[0]
    name = next(m.name for m in first["messages"] if m.role == "tool")
    seen = []

    def run(args: dict):
        seen.append(args)
        if len(seen) == 1:
            raise RuntimeError("backend down")
        return {"ok": True}

    register_executor(name, run)
    try:
        res = simulate(specs[:1], _agents())[0]
    finally:
        unregister_executor(name)
    outs = [m.content for m in res["messages"] if m.role == "tool" and m.name == name]
    assert seen and len(outs) == len(seen)
    assert json.loads(outs[0]) == {"error": "RuntimeError: backend down"}


TOOLS = [
    ToolSpec.from_any(
        {
            "name": "get_weather",
            "description": "w",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        }
    )
]
RETURNS = {
    "get_weather": {
        "type": "object",
        "properties": {"temp": {"type": "number"}},
        "required": ["temp"],
    }
}


def _dlg(call_args, result, act="call", expect="call"):
    msgs = [
        Message(role="user", content="Weather in Lisbon for 3 days please"),
        Message(role="assistant", tool_calls=[ToolCall(name="get_weather", arguments=call_args)]),
    ]
    if result is not None:
        msgs.append(Message(role="tool", name=result[0], content=result[1]))
    acts = [None, {"act": act, "turn": 0, "step": 0, "expect": expect}] + [None] * (len(msgs) - 2)
    return msgs, acts


@pytest.mark.parametrize(
    ("args", "result", "needle"),
    [
        ({"city": "Lisbon"}, None, "fewer tool results"),
        ({"city": "Lisbon"}, ("other", '{"temp": 3}'), "answers a call to 'get_weather'"),
        (
            {"city": "Lisbon"},
            ("get_weather", '{"temp": "hot"}'),
            "does not match its result schema",
        ),
        ({"city": "Lisbon"}, ("get_weather", "sunny"), "is not JSON"),
        ({"days": 3}, ("get_weather", '{"temp": 3}'), "missing_required"),
        ({"city": "Lisbon", "days": "3"}, ("get_weather", '{"temp": 3}'), "type"),
    ],
)
def test_rule_tier_problems(args, result, needle):
    msgs, acts = _dlg(args, result)
    problems = rule_problems(TOOLS, msgs, acts, RETURNS)
    assert any(needle in p for p in problems), problems


def test_rule_tier_keeps_error_results_and_checks_plan_conformance():
    msgs, acts = _dlg({"city": "Lisbon"}, ("get_weather", '{"error": "upstream error"}'))
    assert rule_problems(TOOLS, msgs, acts, RETURNS) == []
    text = [Message(role="user", content="hi"), Message(role="assistant", content="no")]
    problems = rule_problems(
        TOOLS, text, [None, {"act": "text", "turn": 0, "step": 0, "expect": "call"}], RETURNS
    )
    assert any("replied without a call" in p for p in problems)
    msgs, acts = _dlg({"city": "Lisbon"}, ("get_weather", '{"temp": 3}'), expect="clarify")
    assert any(
        "expects no call here (clarify)" in p for p in rule_problems(TOOLS, msgs, acts, RETURNS)
    )


def _payload(args, planned, name="get_weather", act="call", kind="single"):
    msgs, _ = _dlg(args, None)
    msgs[1] = Message(role="assistant", tool_calls=[ToolCall(name=name, arguments=args)])
    return {
        "act": act,
        "step": 0,
        "turn": {"kind": kind, "steps": [[{"name": "get_weather", "arguments": planned}]]},
        "context": [m.to_json() for m in msgs[:1]],
        "message": msgs[1].to_json(),
    }


def test_intent_check():
    assert (
        intent_problems(_payload({"city": "Lisbon", "days": 3}, {"city": "Lisbon", "days": 3}))
        == []
    )
    assert "does not appear" in intent_problems(_payload({"city": "Rome"}, {"city": "Rome"}))[0]
    assert (
        "asked for 3"
        in intent_problems(_payload({"city": "Lisbon", "days": 5}, {"city": "Lisbon", "days": 3}))[
            -1
        ]
    )
    assert (
        "leaves out ['days']"
        in intent_problems(_payload({"city": "Lisbon"}, {"city": "Lisbon", "days": 3}))[0]
    )
    assert (
        "plan intended"
        in intent_problems(_payload({"city": "Lisbon"}, {"city": "Lisbon"}, name="other"))[0]
    )
    p = _payload({}, {"city": "Lisbon"}, act="clarify", kind="clarify")
    p["turn"]["omit"] = "city"
    assert "already gave it" in intent_problems(p)[0]
    p = _payload({}, {}, act="irrelevant", kind="single")
    assert "declined" in intent_problems(p)[0]


def test_plan_parsing_reports_why():
    tools = {t.name: t for t in TOOLS}
    assert "no JSON object" in parse_plan("garbage", tools, ["single"])[1]
    ok = json.dumps(
        {
            "turns": [
                {"kind": "single", "steps": [[{"name": "get_weather", "arguments": {"city": "X"}}]]}
            ]
        }
    )
    assert parse_plan(ok, tools, ["single"])[1] is None
    assert parse_plan(ok, tools, ["parallel"])[1].startswith("kinds: plan turns are ['single']")
    bad = ok.replace('"X"', "5")
    assert "type" in parse_plan(bad, tools, ["single"])[1]
    clar = json.dumps(
        {
            "turns": [
                {
                    "kind": "clarify",
                    "omit": "days",
                    "steps": [[{"name": "get_weather", "arguments": {"city": "X", "days": 2}}]],
                }
            ]
        }
    )
    assert "not a required parameter" in parse_plan(clar, tools, ["clarify"])[1]
