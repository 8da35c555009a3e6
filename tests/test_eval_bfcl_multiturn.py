"""BFCL multi-turn: the official environments driven by validated calls, the official
checker as the judge (needs the installed bfcl-eval; make venv installs it)."""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptool.cli import main
from looptool.core.codec import render_calls
from looptool.core.types import ToolCall
from looptool.engines.base import ChatRequest, Generation, SamplingParams
from looptool.eval.bfcl.env import CallRejected
from looptool.eval.bfcl.multi_turn import (
    MULTI_TURN_CATEGORIES,
    MultiTurnEntry,
    load_multi_turn,
    play_multi_turn,
    score_multi_turn,
)

pytest.importorskip("bfcl_eval")

SYSTEM = [{"role": "system", "content": "test system prompt"}]
PARAMS = SamplingParams(max_tokens=64)


def _tools(functions: list[dict], where: str) -> list[dict]:
    return [{"type": "function", "function": f} for f in functions]


class ScriptedPolicy:
    """Replies with the next scripted text per request; keeps every request it got."""

    backend, model_id, batch_size = "fake", "scripted", 4

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        self.requests += requests
        return [[Generation(text=self.script.pop(0))] for _ in requests]

    def score(self, requests):  # pragma: no cover - never used
        raise NotImplementedError

    def choose(self, requests):  # pragma: no cover
        raise NotImplementedError


@pytest.fixture(scope="module")
def entries() -> dict[str, MultiTurnEntry]:
    return load_multi_turn()


def _gt_script(entry: MultiTurnEntry, turns: list[list[str]] | None = None) -> list[str]:
    """Per turn: one reply with that turn's calls as <tool_call> blocks, then a text
    answer; a turn without calls gets the text answer only."""
    env = entry.environment()
    script: list[str] = []
    for calls in entry.ground_truth if turns is None else turns:
        if calls:
            parsed = [c for text in calls for c in env.resolve_text(text)]
            script.append(render_calls([ToolCall(name=c.name, arguments=c.kwargs) for c in parsed]))
        script.append("Done.")
    return script


def _play(entry: MultiTurnEntry, script: list[str], step_cap: int | None = None):
    policy = ScriptedPolicy(script)
    (run,) = play_multi_turn(
        policy, [entry], system=SYSTEM, to_tools=_tools, params=PARAMS, step_cap=step_cap
    )
    return run, policy


def test_all_four_categories_load(entries: dict[str, MultiTurnEntry]) -> None:
    assert {e.category for e in entries.values()} == set(MULTI_TURN_CATEGORIES)
    assert len(entries) == 800
    held = [e for e in entries.values() if e.held_out]
    assert held and all(e.category == "multi_turn_miss_func" for e in held)
    for e in held:  # a held-out doc is not visible before its turn
        names = {f["name"] for f in e.functions}
        assert not names & {f["name"] for docs in e.held_out.values() for f in docs}


def test_ground_truth_replayed_through_the_runner_scores_100_percent(
    entries: dict[str, MultiTurnEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every entry of the four categories: the ground-truth calls, played as model replies
    through our runner, executed against the environments and scored by the official
    checker, are all valid (no exception)."""
    real_eval = builtins.eval
    runner_evals: list[str] = []
    failures: list[tuple[str, str | None, str | None]] = []
    for entry in entries.values():
        # our runner itself never evaluates text; only the official checker does, below
        monkeypatch.setattr(builtins, "eval", lambda *a, **k: runner_evals.append(a[0]))
        run, _ = _play(entry, _gt_script(entry))
        monkeypatch.setattr(builtins, "eval", real_eval)
        assert run.stop == "answered" and not run.refused
        verdict = score_multi_turn(entry, run.result)
        if not verdict.valid:
            failures.append((entry.id, verdict.error_type, verdict.message))
    assert runner_evals == []
    assert failures == []


def test_a_wrong_call_in_turn_two_fails_the_entry(entries: dict[str, MultiTurnEntry]) -> None:
    entry = entries["multi_turn_base_0"]
    turns = [list(t) for t in entry.ground_truth]
    turns[1] = ["mkdir(dir_name='not_what_was_asked')"]
    run, _ = _play(entry, _gt_script(entry, turns))
    verdict = score_multi_turn(entry, run.result)
    assert not verdict.valid
    assert verdict.error_type == "multi_turn:instance_state_mismatch"
    assert "turn 1" in verdict.message or "GorillaFileSystem" in verdict.message
    # the same entry with the right turn 2 passes (the failure is the wrong call)
    ok_run, _ = _play(entry, _gt_script(entry))
    assert score_multi_turn(entry, ok_run.result).valid


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        ("__import__", {"name": "os"}, "private and dunder"),
        ("__class__", {}, "private and dunder"),
        ("_load_scenario", {"scenario": {}}, "private and dunder"),
        ("os.system", {"command": "echo hi"}, "not a plain method name"),
        ("eval", {"source": "1+1"}, "unknown method"),
        ("rm", {"__class__": "x"}, "private names are refused"),
        ("cd", {"folder": "document", "extra": 1}, "unexpected keyword"),
    ],
)
def test_a_call_reaching_outside_the_environment_is_a_refused_step(
    entries: dict[str, MultiTurnEntry],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    arguments: dict,
    reason: str,
) -> None:
    entry = entries["multi_turn_base_0"]
    before = repr(vars(entry.environment().instances["GorillaFileSystem"]))
    monkeypatch.setattr(builtins, "eval", pytest.fail)  # never evaluated
    monkeypatch.setattr(builtins, "__import__", builtins.__import__)
    bad = render_calls([ToolCall(name=name, arguments=arguments)])
    script = [bad, "Done."] + _gt_script(entry)[2:]
    run, policy = _play(entry, script)
    monkeypatch.undo()
    assert run.refused and reason in run.refused[0] and run.refused[0].startswith("turn 0 step 0")
    assert run.result[0] == [[]]  # the step is recorded, with no executed call
    tool_msg = policy.requests[1].messages[-1]
    assert tool_msg["role"] == "tool" and "call refused" in tool_msg["content"]
    # nothing ran: a fresh dialogue's environment starts from the same state
    assert repr(vars(entry.environment().instances["GorillaFileSystem"])) == before


def test_bfcl_format_results_are_validated_before_the_official_checker(
    entries: dict[str, MultiTurnEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results from other runners: only re-rendered validated calls reach the checker's eval."""
    entry = entries["multi_turn_base_0"]
    seen: list[str] = []
    real_eval = builtins.eval

    def spy(source, *args):
        seen.append(source)
        caller = sys._getframe(1)  # a bare eval() reads its caller's namespace
        return real_eval(source, *(args or (caller.f_globals, caller.f_locals)))

    hostile = [
        "__import__('os').system('touch /tmp/looptool_pwned')",
        "cd(folder=__import__('os').getcwd())",
        "ls.__globals__",
        "[cd(folder='document'), exit()]",
    ]
    result = [[list(t)] for t in entry.ground_truth]
    result[0] = [hostile, *result[0]]
    monkeypatch.setattr(builtins, "eval", spy)
    verdict = score_multi_turn(entry, result)
    monkeypatch.undo()
    assert verdict.valid  # the hostile step is dropped, the ground truth still holds
    assert len(verdict.refused) == len(hostile)
    assert seen and not any("__" in s or "exit" in s for s in seen)
    with pytest.raises(CallRejected, match="unknown method"):
        entry.environment().resolve_text("exit()")


def test_miss_func_adds_the_held_out_docs_at_their_turn(
    entries: dict[str, MultiTurnEntry],
) -> None:
    entry = next(e for e in entries.values() if e.held_out)
    (turn, docs), *_ = entry.held_out.items()
    run, policy = _play(entry, _gt_script(entry))
    assert score_multi_turn(entry, run.result).valid
    held_names = {d["name"] for d in docs}
    by_turn: dict[int, ChatRequest] = {}
    for req in policy.requests:  # the first request of each turn
        by_turn.setdefault(sum(m["role"] == "user" for m in req.messages) - 1, req)
    names = {t: {x["function"]["name"] for x in r.tools} for t, r in by_turn.items()}
    assert not held_names & names[turn - 1]
    assert held_names <= names[turn]
    assert "updated some more functions" in by_turn[turn].messages[-1]["content"]


def test_step_cap_force_terminates_the_entry(entries: dict[str, MultiTurnEntry]) -> None:
    entry = entries["multi_turn_base_0"]
    loop = render_calls([ToolCall(name="pwd", arguments={})])
    run, _ = _play(entry, [loop] * 4, step_cap=2)
    assert run.stop == "step_cap" and len(run.result) == 1 and len(run.result[0]) == 3
    verdict = score_multi_turn(entry, run.result)
    assert not verdict.valid and verdict.error_type == "multi_turn:force_terminated"


def test_malformed_results_are_verdicts_not_errors(entries: dict[str, MultiTurnEntry]) -> None:
    entry = entries["multi_turn_base_0"]
    assert score_multi_turn(entry, "ls()").error_type == "multi_turn:inference_error"
    assert score_multi_turn(entry, [[[1]]]).error_type == "multi_turn:inference_error"
    short = [[list(t)] for t in entry.ground_truth][:-1]
    assert score_multi_turn(entry, short).error_type == "multi_turn:force_terminated"


def test_eval_bfcl_scores_multi_turn_results_in_bfcl_format(
    entries: dict[str, MultiTurnEntry], tmp_path: Path
) -> None:
    """`looptool eval bfcl --predictions` with BFCL's own multi-turn result format, mixed
    with single-turn lines; no --data needed for the multi-turn ids."""
    good = entries["multi_turn_base_0"]
    wrong = entries["multi_turn_miss_func_1"]
    wrong_turns = [[list(t)] for t in wrong.ground_truth]
    wrong_turns[1] = [["mkdir(dir_name='nope')"]]
    lines = [
        {"id": good.id, "result": [[list(t)] for t in good.ground_truth]},
        {"id": wrong.id, "result": wrong_turns},
        {"id": "multi_turn_base_1", "result": "not a list"},
        {"id": "irrelevance_0", "result": "No function fits."},
    ]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "scored.jsonl"
    r = CliRunner().invoke(main, ["eval", "bfcl", "--predictions", str(preds), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in map(json.loads, out.read_text().splitlines())}
    assert rows[good.id] == {"id": good.id, "valid": True, "error_type": None}
    assert rows[wrong.id]["error_type"] == "multi_turn:instance_state_mismatch"
    assert rows["multi_turn_base_1"]["error_type"] == "multi_turn:inference_error"
    assert rows["irrelevance_0"]["valid"]
    table = {ln.split()[0]: ln.split() for ln in r.output.splitlines() if ln.strip()}
    assert table["multi_turn_base"][1:4] == ["200", "2", "1"]
    assert table["multi_turn_miss_func"][1:4] == ["200", "1", "0"]


@pytest.mark.slow
def test_bfcl_run_cli_with_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """bfcl-run end to end on the tiny hf model: files, table, rescoring, cache resume."""
    args = [
        "eval", "bfcl-run", "--model", str(tiny_model_dir), "--limit", "1",
        "--categories", "simple_python,irrelevance,multi_turn_base",
        "--max-tokens", "8", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "bfcl-eval 2026.3.23" in r.output and "v3 (Table 1): Overall" in r.output
    scores = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert set(scores["categories"]) == {"simple_python", "irrelevance", "multi_turn_base"}
    assert set(scores["v3"]) == {
        "Overall", "Non-Live AST", "Live", "Multi-Turn", "Relevance", "Irrelevance"
    }  # fmt: skip
    verdicts = [json.loads(x) for x in (tmp_path / "o" / "verdicts.jsonl").read_text().splitlines()]
    assert [v["category"] for v in verdicts] == ["simple_python", "irrelevance", "multi_turn_base"]
    preds = tmp_path / "o" / "predictions.jsonl"
    scored = tmp_path / "rescored.jsonl"
    r2 = CliRunner().invoke(
        main, ["eval", "bfcl", "--predictions", str(preds), "--out", str(scored)]
    )
    assert r2.exit_code == 0, r2.output
    rescored = {x["id"]: x["valid"] for x in map(json.loads, scored.read_text().splitlines())}
    # every prediction line rescored to the run's verdict (an engine error on a
    # single-turn item leaves no prediction; a multi-turn one leaves its partial result)
    assert rescored.items() <= {v["id"]: v["valid"] for v in verdicts}.items()
    assert {v["id"] for v in verdicts if v["reason"] != "engine_error"} <= set(rescored)
    # a rerun is served from the request cache; only requests that failed (over-long
    # prompts for this tiny model: not cached) go to the backend again; the finished run's
    # files are replaced only with --force
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "already exists" in refused.output
    r3 = CliRunner().invoke(main, [*args, "--force"])
    assert r3.exit_code == 0, r3.output
    again = json.loads((tmp_path / "o" / "scores.json").read_text())
    first, second = scores["engine"], again["engine"]
    assert (
        second["cache_hits"] == first["cache_hits"] + first["cache_misses"] - second["cache_misses"]
    )
    assert second["cache_hits"] > 0 and again["categories"] == scores["categories"]
