"""BFCL multi-turn: load the entries, play them against the environments, score them with
the official multi-turn checker.

An entry is a list of user turns over a set of environment classes (file system,
trading, ...) loaded with an initial config. Per turn the policy is asked again until it
answers without a call (or a step cap); each reply's calls run against the environment
(looptool.eval.bfcl.env: validated, never evaluated) and their results go back as tool
messages. ``miss_func`` entries hold some function docs back until a stated turn, which
then carries the official "I have updated some more functions" user message. The result
has BFCL's own format, a list per turn of a list per step of call strings.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptool.core.codec import parse_completion
from looptool.core.match_bfcl import BfclDataError, BfclResult
from looptool.core.types import ToolCall
from looptool.engines.base import ChatRequest, Engine, SamplingParams
from looptool.eval.bfcl import official
from looptool.eval.bfcl.data import MULTI_TURN_CATEGORIES, read_jsonl
from looptool.eval.bfcl.env import BfclEnvironment, CallRejected, EnvCall
from looptool.eval.policy import FailureBudget, generate_answers


@dataclass
class MultiTurnEntry:
    """One multi-turn question with its environment setup and ground truth."""

    id: str
    category: str
    turns: list[list[dict]]
    initial_config: dict
    involved_classes: list[str]
    functions: list[dict]  # docs visible from the first turn
    held_out: dict[int, list[dict]]  # turn index -> docs added at that turn (miss_func)
    ground_truth: list[list[str]]

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category

    def environment(self) -> BfclEnvironment:
        """A fresh environment in the entry's initial state."""
        return BfclEnvironment(self.involved_classes, self.initial_config, self.long_context)

    def score(self, result: Any, dot_to_underscore: bool = False) -> BfclResult:
        """:func:`score_multi_turn` as a BfclResult (names are BFCL's own, no '.' rule)."""
        v = score_multi_turn(self, result)
        details = {"message": v.message, "refused": v.refused} if not v.valid else {}
        return BfclResult(v.valid, v.error_type or "", details)

    def checker_entry(self) -> dict:
        """The fields the official checker reads from a test entry."""
        return {
            "id": self.id,
            "initial_config": self.initial_config,
            "involved_classes": self.involved_classes,
        }


def _class_docs(class_name: str, cache: dict[str, list[dict]]) -> list[dict]:
    if class_name not in cache:
        path = official.multi_turn_func_doc_path(class_name)
        cache[class_name] = [obj for _, obj in read_jsonl(path, key="name")]
    return cache[class_name]


def load_multi_turn(
    categories: Iterable[str] | None = None, data_dir: str | Path | None = None
) -> dict[str, MultiTurnEntry]:
    """Multi-turn entries of ``categories`` (default: all four) from the installed bfcl-eval
    data (or ``data_dir`` laid out the same way). Function docs follow the official
    preprocessing: every involved class's docs, minus the held-out ones of miss_func."""
    d = Path(data_dir) if data_dir is not None else official.data_dir()
    wanted = list(MULTI_TURN_CATEGORIES if categories is None else categories)
    docs_cache: dict[str, list[dict]] = {}
    out: dict[str, MultiTurnEntry] = {}
    for cat in wanted:
        if cat not in MULTI_TURN_CATEGORIES:
            raise BfclDataError(f"unknown multi-turn category {cat!r}")
        qpath = d / f"BFCL_v4_{cat}.json"
        apath = d / "possible_answer" / f"BFCL_v4_{cat}.json"
        for p in (qpath, apath):
            if not p.is_file():
                raise BfclDataError(f"BFCL multi-turn file missing: {p}")
        answers = {obj["id"]: obj.get("ground_truth") for _, obj in read_jsonl(apath)}
        for lineno, obj in read_jsonl(qpath):
            where = f"{qpath}:{lineno}"
            gt = answers.get(obj["id"])
            turns, classes = obj.get("question"), obj.get("involved_classes")
            if not isinstance(gt, list) or not all(isinstance(t, list) for t in gt):
                raise BfclDataError(f"{where}: no ground truth (list per turn) in {apath}")
            if not isinstance(turns, list) or len(turns) != len(gt):
                raise BfclDataError(f"{where}: 'question' must hold one list per turn")
            if not isinstance(classes, list) or not classes:
                raise BfclDataError(f"{where}: 'involved_classes' must be a non-empty list")
            try:
                functions = [doc for c in classes for doc in _class_docs(c, docs_cache)]
            except KeyError as exc:
                raise BfclDataError(f"{where}: {exc.args[0]}") from None
            held_out: dict[int, list[dict]] = {}
            for turn, names in (obj.get("missed_function") or {}).items():
                held = [f for f in functions if f.get("name") in set(names)]
                functions = [f for f in functions if f.get("name") not in set(names)]
                held_out[int(turn)] = held
            out[obj["id"]] = MultiTurnEntry(
                id=obj["id"],
                category=cat,
                turns=turns,
                initial_config=obj.get("initial_config") or {},
                involved_classes=classes,
                functions=functions,
                held_out=held_out,
                ground_truth=gt,
            )
    return out


# ---------------------------------------------------------------- scoring


@dataclass
class MultiTurnVerdict:
    """The official checker's verdict plus the calls we refused before it ran."""

    valid: bool
    error_type: str | None = None
    message: str | None = None
    refused: list[str] = field(default_factory=list)  # "turn t step s: reason"


def _check_shape(result: Any) -> bool:
    return isinstance(result, list) and all(
        isinstance(turn, list)
        and all(isinstance(step, list) and all(isinstance(c, str) for c in step) for step in turn)
        for turn in result
    )


def validated_result(
    entry: MultiTurnEntry, result: list[list[list[str]]]
) -> tuple[list[list[list[str]]], list[str]]:
    """Every call string re-rendered from a validated call; refused ones dropped with a
    reason (upstream they would only run into an error, so state and responses agree)."""
    env = entry.environment()
    refused: list[str] = []
    clean: list[list[list[str]]] = []
    for t, turn in enumerate(result):
        steps: list[list[str]] = []
        for s, step in enumerate(turn):
            calls: list[str] = []
            for text in step:
                try:
                    calls += [c.render() for c in env.resolve_text(text)]
                except CallRejected as exc:
                    refused.append(f"turn {t} step {s}: {exc}")
            steps.append(calls)
        clean.append(steps)
    return clean, refused


def _official_check(entry: MultiTurnEntry, decoded: list[list[list[str]]]) -> dict:
    checker = official.module("eval_checker.multi_turn_eval.multi_turn_checker")
    utils = official.module("eval_checker.multi_turn_eval.multi_turn_utils")
    # The official executor keeps instances in its module globals, keyed by model name and
    # entry id: a fresh name per check keeps runs independent; they are removed afterwards.
    name = f"looptool_{uuid.uuid4().hex}"
    prefix = re.sub(r"[-./:]", "_", name)
    try:
        return checker.multi_turn_checker(
            decoded, entry.ground_truth, entry.checker_entry(), entry.category, name
        )
    finally:
        for key in [k for k in vars(utils) if k.startswith(prefix)]:
            del vars(utils)[key]


def score_multi_turn(entry: MultiTurnEntry, result: Any) -> MultiTurnVerdict:
    """Score a result in BFCL's format (list per turn of list per step of call strings)
    with the official rules: a wrong turn count means force-terminated, empty steps are
    dropped, then the official state and response checks run turn by turn."""
    if not _check_shape(result):
        return MultiTurnVerdict(
            False, "multi_turn:inference_error", "result must be a list per turn of a list "
            "per step of call strings",
        )  # fmt: skip
    if len(result) != len(entry.ground_truth):
        return MultiTurnVerdict(
            False,
            "multi_turn:force_terminated",
            f"{len(result)} result turns for {len(entry.ground_truth)} ground-truth turns",
        )
    clean, refused = validated_result(entry, result)
    decoded = [[step for step in turn if step] for turn in clean]
    try:
        out = _official_check(entry, decoded)
    except Exception as exc:  # an upstream checker failure is this entry's verdict, not a crash
        return MultiTurnVerdict(False, "multi_turn:checker_error", repr(exc)[:500], refused)
    if out.get("valid"):
        return MultiTurnVerdict(True, None, None, refused)
    return MultiTurnVerdict(False, out.get("error_type"), out.get("error_message"), refused)


# ---------------------------------------------------------------- playing an entry


@dataclass
class MultiTurnRun:
    """What happened in one entry: the BFCL result, per-step log and why it stopped."""

    entry: MultiTurnEntry
    result: list[list[list[str]]] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)  # one row per step
    refused: list[str] = field(default_factory=list)
    stop: str = "answered"  # answered | step_cap | engine_error


class _Dialogue:
    """One entry's conversation, advanced one model reply at a time."""

    def __init__(
        self,
        entry: MultiTurnEntry,
        system: list[dict],
        to_tools: Callable[[list[dict], str], list[dict]],
        step_cap: int,
    ) -> None:
        self.entry = entry
        self.env = entry.environment()
        self.messages = list(system)
        self.to_tools = to_tools
        self.tools = to_tools(entry.functions, entry.id)
        self.step_cap = step_cap
        self.run = MultiTurnRun(entry)
        self.turn = -1
        self.steps = 0
        self.done = False
        self._next_turn()

    def _next_turn(self) -> None:
        self.turn += 1
        if self.turn >= len(self.entry.turns):
            self.done = True
            return
        user = list(self.entry.turns[self.turn])
        held = self.entry.held_out.get(self.turn)
        if held is not None:
            self.tools = self.tools + self.to_tools(held, self.entry.id)
            user = [{"role": "user", "content": official.additional_function_prompt()}]
        self.messages += [{"role": m["role"], "content": m.get("content", "")} for m in user]
        self.run.result.append([])
        self.steps = 0

    def request(self, params: SamplingParams, thinking: bool) -> ChatRequest:
        return ChatRequest(
            messages=list(self.messages),
            tools=self.tools,
            params=params,
            chat_template_kwargs={"enable_thinking": thinking},
        )

    def engine_failed(self, error: str) -> None:
        self.run.log.append({"turn": self.turn, "step": self.steps, "error": error})
        self.run.stop = "engine_error"
        self.done = True

    def feed(self, text: str) -> None:
        """Take one model reply: run its calls, or end the turn when it has none."""
        parsed = parse_completion(text)
        row: dict = {"turn": self.turn, "step": self.steps, "text": text}
        self.run.log.append(row)
        if parsed.error is not None or not parsed.calls:
            # an undecodable reply ends the turn, as upstream
            if parsed.error is not None:
                row["error"] = f"{parsed.error.kind}: {parsed.error.message}"
            self.messages.append({"role": "assistant", "content": parsed.text or text})
            self._next_turn()
            return
        executed: list[str] = []
        tool_msgs: list[dict] = []
        for call in parsed.calls:
            try:
                ec: EnvCall = self.env.resolve(call.name, call.arguments)
            except CallRejected as exc:
                reason = f"turn {self.turn} step {self.steps}: {exc}"
                self.run.refused.append(reason)
                row.setdefault("refused", []).append(str(exc))
                tool_msgs.append(_tool_msg(call, f"Error: call refused: {exc}"))
                continue
            executed.append(ec.render())
            tool_msgs.append(_tool_msg(call, self.env.execute(ec)))
        row["calls"] = executed
        self.run.result[-1].append(executed)
        self.messages.append(
            {
                "role": "assistant",
                "content": parsed.text,
                "tool_calls": [c.to_openai() for c in parsed.calls],
            }
        )
        self.messages += tool_msgs
        self.steps += 1
        if self.steps > self.step_cap:
            # upstream stops the whole entry here; fewer turns than the ground truth fail it
            self.run.stop = "step_cap"
            self.done = True


def _tool_msg(call: ToolCall, content: str) -> dict:
    return {"role": "tool", "name": call.name, "content": content}


def play_multi_turn(
    engine: Engine,
    entries: Sequence[MultiTurnEntry],
    *,
    system: list[dict],
    to_tools: Callable[[list[dict], str], list[dict]],
    params: SamplingParams,
    thinking: bool = False,
    step_cap: int | None = None,
    on_done: Callable[[MultiTurnRun], None] | None = None,
    budget: FailureBudget | None = None,
) -> list[MultiTurnRun]:
    """Play every entry; the live conversations advance together, one batched request
    per conversation per round, so batching backends stay busy. A conversation whose
    request fails ends there (stop ``engine_error``) and is charged to ``budget``."""
    cap = official.max_steps_per_turn() if step_cap is None else step_cap
    dialogues = [_Dialogue(e, system, to_tools, cap) for e in entries]
    for d in dialogues:
        if d.done and on_done is not None:
            on_done(d.run)
    while live := [d for d in dialogues if not d.done]:
        answers = generate_answers(engine, [d.request(params, thinking) for d in live])
        for d, (text, error) in zip(live, answers, strict=True):
            if text is None:
                d.engine_failed(error or "engine_error")
                if budget is not None:
                    budget.fail(error or "engine_error")
            else:
                d.feed(text)
            if d.done and on_done is not None:
                on_done(d.run)
    return [d.run for d in dialogues]
