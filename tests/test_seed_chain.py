"""The chain rule with LLM seed roles, driven by a scripted fake LLM: the planner states the
value flow (provides / uses), the user is never told the chained value, plan validation
takes any order of the drawn kinds, and a collapsed chain is rejected with a reason."""

from __future__ import annotations

import json
from collections.abc import Sequence

from looptool.core.codec import render_calls
from looptool.core.types import ToolCall, ToolSpec, canonical_json
from looptool.engines.base import ChatRequest, Generation
from looptool.seed.agents import AgentSet, SimConfig, simulate
from looptool.seed.dialogue_draw import DialogueSpec
from looptool.seed.intent import intent_problems
from looptool.seed.plan import parse_plan, reject_class
from looptool.seed.roles import AGENTS
from looptool.seed.verify import chain_problems, rule_problems, steps_to_check

FIND = {
    "name": "find_order",
    "description": "Find a customer's latest order.",
    "parameters": {
        "type": "object",
        "properties": {"customer_name": {"type": "string", "description": "Customer name"}},
        "required": ["customer_name"],
    },
}
TRACK = {
    "name": "track_order",
    "description": "Track an order.",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "Order id"}},
        "required": ["order_id"],
    },
}
RETURNS = {
    "find_order": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}},
        "required": ["order_id"],
    },
    "track_order": {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    },
}
TOOLS = {t["name"]: ToolSpec.from_any(t) for t in (FIND, TRACK)}


def _plan(uses: bool = True, provides: bool = True, second_value: bool = True) -> dict:
    first = {"name": "find_order", "arguments": {"customer_name": "Ana Silva"}}
    second: dict = {"name": "track_order", "arguments": {}}
    if provides:
        first["provides"] = {"order_id": "ORD-4821"}
    if second_value:
        second["arguments"]["order_id"] = "ORD-4821"
    if uses:
        second["uses"] = {"order_id": "step0.order_id"}
    return {
        "turns": [
            {
                "kind": "single",
                "steps": [[{"name": "track_order", "arguments": {"order_id": "ORD-1"}}]],
            },
            {
                "kind": "multi_step",
                "request": "track my latest order",
                "steps": [[first], [second]],
            },
        ]
    }


class ScriptedLLM:
    """An engine that answers each agent's requests from a script, in order, and keeps the
    prompts it was sent (a stand-in for an LLM backend: not the template backend)."""

    backend = "scripted"
    model_id = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        self.script = {k: list(v) for k, v in script.items()}
        self.prompts: dict[str, list[str]] = {}

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        out = []
        for r in requests:
            self.prompts.setdefault(r.task or "", []).append(json.dumps(r.messages))
            out.append([Generation(text=self.script[r.task or ""].pop(0))])
        return out


def _call(name: str, **args) -> str:
    return render_calls([ToolCall(name=name, arguments=args)])


def _script(request_text: str) -> dict[str, list[str]]:
    return {
        "seed.planner": [json.dumps(_plan())],
        "seed.user": ["Where is order ORD-1?", request_text],
        "seed.assistant": [
            _call("track_order", order_id="ORD-1"),
            "It is in transit.",
            _call("find_order", customer_name="Ana Silva"),
            _call("track_order", order_id="ORD-4821"),
            "Your latest order has shipped.",
        ],
        "seed.tool": [
            '{"status": "in transit"}',
            '{"order_id": "ORD-4821", "total": 12.5}',
            '{"status": "shipped"}',
        ],
    }


def _run(request_text: str) -> tuple[ScriptedLLM, DialogueSpec, dict]:
    llm = ScriptedLLM(_script(request_text))
    apis = [
        {
            "name": t["name"],
            "api_id": t["name"],
            "spec": canonical_json(t),
            "returns": canonical_json(RETURNS[t["name"]]),
            "hints": None,
            "domain": "shop",
        }
        for t in (FIND, TRACK)
    ]
    # drawn in the other order than the planner writes them: still a valid plan
    spec = DialogueSpec(0, "dlg-chain", "shop", apis, ["multi_step", "single"], [], 0)
    res = simulate([spec], AgentSet(dict.fromkeys(AGENTS, llm), SimConfig()))[0]
    return llm, spec, res


def test_chain_flows_from_the_result_and_the_user_is_not_told_the_value():
    llm, spec, res = _run("Find Ana Silva's latest order and then track it using that result.")
    assert "reject" not in res, res.get("reject")
    planner_prompt = llm.prompts["seed.planner"][0]
    assert '\\"uses\\"' in planner_prompt and "provides" in planner_prompt
    assert 'Here \\"find_order\\" returns \\"order_id\\"' in planner_prompt
    user_prompt = llm.prompts["seed.user"][1]
    assert "Ana Silva" in user_prompt and "Do NOT state the order id" in user_prompt
    assert "ORD-4821" not in user_prompt  # the user is never shown the chained value
    plan = res["plan"].model_dump(mode="json")
    assert [t["kind"] for t in plan["turns"]] == ["single", "multi_step"]
    msgs, acts = res["messages"], res["acts"]
    returns = {n: RETURNS[n] for n in TOOLS}
    assert rule_problems(spec.tools, msgs, acts, returns) == []
    assert chain_problems(plan, msgs, acts) == []
    steps = steps_to_check("dlg-chain", plan, msgs, acts, {"call"})
    assert len(steps) == 3 and all(intent_problems(s.payload) == [] for s in steps)


def test_a_user_who_states_the_chained_value_collapses_the_chain():
    _, _, res = _run("Track order ORD-4821 of Ana Silva.")
    problems = chain_problems(res["plan"].model_dump(mode="json"), res["messages"], res["acts"])
    assert problems == [
        'message 7: track_order.order_id="ORD-4821" was stated by the user but should come '
        "from step0.order_id"
    ]


def test_a_tool_result_without_the_value_breaks_the_chain():
    llm = ScriptedLLM({})
    plan = _plan()
    msgs = [
        {"role": "user", "content": "Track Ana Silva's latest order."},
        {
            "role": "assistant",
            "tool_calls": [{"name": "find_order", "arguments": {"customer_name": "Ana Silva"}}],
        },
        {"role": "tool", "name": "find_order", "content": '{"order_id": "ORD-9"}'},
        {
            "role": "assistant",
            "tool_calls": [{"name": "track_order", "arguments": {"order_id": "ORD-4821"}}],
        },
    ]
    from looptool.core.types import Message

    messages = [Message.model_validate(m) for m in msgs]
    acts = [
        None,
        {"act": "call", "turn": 1, "step": 0},
        None,
        {"act": "call", "turn": 1, "step": 1},
    ]
    assert llm.prompts == {}
    assert chain_problems(plan, messages, acts) == [
        'message 3: track_order.order_id="ORD-4821" does not come from an earlier result '
        "(step0.order_id)"
    ]


def test_plan_validation_takes_any_order_and_fills_one_side_of_the_flow():
    kinds = ["multi_step", "single"]
    plan, err = parse_plan(json.dumps(_plan(second_value=False)), TOOLS, kinds, RETURNS)
    assert err is None
    assert plan.turns[1].steps[1][0].arguments == {"order_id": "ORD-4821"}
    plan, err = parse_plan(json.dumps(_plan(provides=False)), TOOLS, kinds, RETURNS)
    assert err is None and plan.turns[1].steps[0][0].provides == {"order_id": "ORD-4821"}
    # a written kind that disagrees with the turn's shape is replaced by the shape's kind
    mislabeled = _plan()
    mislabeled["turns"][1]["kind"] = "parallel"
    assert parse_plan(json.dumps(mislabeled), TOOLS, kinds, RETURNS)[1] is None


def test_every_plan_reject_has_a_reason_and_a_class():
    kinds = ["multi_step", "single"]
    cases = {
        "json": "I cannot plan that.",
        "plan": json.dumps({"turns": []}),
        "kinds": json.dumps(_plan()),  # checked against other drawn kinds below
        "chain": json.dumps(_plan(uses=False)),
        "calls": json.dumps(_plan()).replace('"ORD-1"', "7"),
    }
    for cls, text in cases.items():
        drawn = ["parallel", "single"] if cls == "kinds" else kinds
        plan, reason = parse_plan(text, TOOLS, drawn, RETURNS)
        assert plan is None and reason, cls
        assert reject_class(reason) == cls, reason
    no_value = _plan(provides=False, second_value=False)
    reason = parse_plan(json.dumps(no_value), TOOLS, kinds, RETURNS)[1]
    assert reason.startswith("chain:") and "no value for track_order.order_id" in reason
    bad_ref = _plan()
    bad_ref["turns"][1]["steps"][1][0]["uses"] = {"order_id": "step1.order_id"}
    reason = parse_plan(json.dumps(bad_ref), TOOLS, kinds, RETURNS)[1]
    assert "not 'step<k>.<result field>' of an earlier step" in reason
    failing = _plan()
    failing["turns"][1]["steps"][0][0]["fails"] = True
    assert "planned to fail" in parse_plan(json.dumps(failing), TOOLS, kinds, RETURNS)[1]
