"""The `oracle` backend: a deterministic instant engine for dry runs. Not a model.

It answers from labels it reads at construction: ``engines.<role>.oracle.tables``,
parquet files or globs in priority order, give each sample id its true label (a table
with ``clean_label``, the seed's ``label_noise.parquet``, gives the clean label of a
sample whose stored label was made noisy). It serves every role the loop needs:

- **Policy** (probe, eval, the held-out checks): a policy request holds the sample's tools
  and, after the system prompt, its context (:mod:`looptool.core.prompting`), so their
  canonical hash is the sample id (:func:`prompt_id`). The answer is the true label in
  the policy's output format, except for a seeded share ``error_rate`` of samples,
  answered wrong (``error_kinds``): another tool of the request, another value for one
  argument, a text reply instead of the call, or a surface variant (a string argument in
  other case: the judge's equivalence tier calls it BOTH_CORRECT); no-call labels get a
  call or the other kind of text. The draw is keyed by (seed, checkpoint path, sample id): each
  iteration's checkpoint errs on other samples. A prompt no table holds (BFCL items) gets
  a text reply. Log-probs are seeded per answer (wrong answers less likely), so PPL and
  HPPL have something to rank.
- **Judge** (task ``judge``: :mod:`looptool.loop.judge.vote` sends the sample id, label,
  prediction and response order to engines that read payloads): the verdict the true
  label gives (label right and prediction wrong: PRED_WRONG; the reverse: LABEL_WRONG;
  both or neither right: BOTH_CORRECT / BOTH_WRONG), replaced by another verdict for a
  seeded share ``judge_error_rate`` of questions, written as the option for the order
  asked. The draw is keyed by the question (sample id, label, prediction), not the order,
  so both orders agree; keyed by the sample alone, a sample flipped once would be flipped
  in every later iteration too, and such samples pile up among the mismatches (a relabel
  the judge got wrong is a mismatch again next time): measured 0.107 -> 0.153 at J = 4.
- Any other task (EDDE children and checks, seed verification): the template backend's.

Counts of what it did (answers, wrong answers, unknown prompts, verdicts, flipped
verdicts) are in :meth:`OracleEngine.stats`, which the stages put in their metrics. Never
cached: answers are instant and a code change would leave cached ones stale. The tables
are not dvc.yaml dependencies of the stages it serves: all of them are upstream of those
stages (seed tables, earlier iterations' EDDE children), a shortcut only a dry run may take.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from looptool.core.codec import render_calls
from looptool.core.match import match_strict, no_call_kind
from looptool.core.tables import label_from_json
from looptool.core.types import Label, ToolCall, canonical_json, content_hash
from looptool.engines.backends.template import TemplateEngine
from looptool.engines.base import (
    JUDGE_TASK,
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Generation,
    Score,
    ScoreRequest,
)
from looptool.params.engines import OracleSpec

VERDICTS = ("PRED_WRONG", "LABEL_WRONG", "BOTH_CORRECT", "BOTH_WRONG")
TEXTS = {  # replies whose kind no_call_kind reads as the key
    "clarify": "Could you tell me which details you want me to use for this?",
    "irrelevant": "Sorry, none of the available functions can help with that request.",
}


def _unit(*parts: object) -> float:
    """A uniform [0, 1) number from ``parts`` (stable across runs and processes)."""
    digest = hashlib.sha256(canonical_json([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _stored_message(m: dict) -> dict:
    """A request message (OpenAI form) back in the stored form of Message.to_json."""
    out = dict(m)
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            if "function" in c
            else c
            for c in m["tool_calls"]
        ]
    return out


def prompt_id(messages: Sequence[dict], tools: Sequence[dict] | None) -> str:
    """The sample id of a policy request: tools and context as a sample stores them
    (the system prompt dropped; a context's own system message is folded into it, see
    :func:`looptool.core.prompting.policy_messages`, and indexed by its alternate id)."""
    tools_json = [t.get("function", t) for t in tools or []]
    context = [_stored_message(m) for m in messages[1:]]
    return content_hash({"tools": tools_json, "context": context})


def read_truth(patterns: Sequence[str]) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
    """(sample id -> (true label JSON, kind), alternate prompt id -> sample id) from the
    tables ``patterns`` name, the first table holding a sample winning."""
    truth: dict[str, tuple[str, str | None]] = {}
    alt: dict[str, str] = {}
    paths: list[str] = []
    for pattern in patterns:
        hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths += [p for p in hits if Path(p).is_file() or not glob.has_magic(pattern)]
    for path in paths:
        if not Path(path).is_file():
            raise EngineError(f"oracle: label table not found: {path}")
        names = set(pq.read_schema(path).names)
        if "clean_label" in names:
            rows = pq.read_table(path, columns=["sample_id", "clean_label"]).to_pylist()
            for r in rows:
                truth.setdefault(r["sample_id"], (r["clean_label"], None))
            continue
        if not {"sample_id", "label"} <= names:
            raise EngineError(f"oracle: {path} has no sample_id / label columns")
        cols = ["sample_id", "label", *(c for c in ("kind", "tools", "context") if c in names)]
        for r in pq.read_table(path, columns=cols).to_pylist():
            sid = r["sample_id"]
            if sid in truth or r["label"] in (None, "null"):
                continue
            truth[sid] = (r["label"], r.get("kind"))
            context = r.get("context") or ""
            if '"role":"system"' in context:  # folded into the policy's system prompt
                msgs = json.loads(context)
                if msgs and msgs[0].get("role") == "system":
                    key = content_hash({"tools": json.loads(r["tools"]), "context": msgs[1:]})
                    alt.setdefault(key, sid)
    return truth, alt


class OracleEngine:
    """See the module docstring."""

    backend = "oracle"
    supports_choice = True
    reads_payload = True

    def __init__(self, spec: OracleSpec, model: str | None = None, batch_size: int = 1024):
        self.spec = spec
        self.checkpoint = model or ""
        self.batch_size = batch_size
        self.model_id = f"oracle:{spec.seed}:{spec.error_rate:g}:{spec.judge_error_rate:g}"
        if model:
            self.model_id += f":{model}"
        self._truth, self._alt = read_truth(spec.tables)
        self._labels: dict[str, Label] = {}
        self._template = TemplateEngine(batch_size=batch_size)
        self.counts: Counter[str] = Counter()
        kinds = sorted(spec.error_kinds.items())
        total = sum(w for _, w in kinds)
        self._kinds = [(k, w / total) for k, w in kinds if w > 0]

    # --- truth ---------------------------------------------------------------------------
    def truth(self, sample_id: str) -> Label | None:
        """The true label of ``sample_id`` (None when no table holds it)."""
        if sample_id not in self._labels:
            if sample_id not in self._truth:
                return None
            text, kind = self._truth[sample_id]
            self._labels[sample_id] = label_from_json(text, kind)
        return self._labels[sample_id]

    def stats(self) -> dict[str, Any]:
        return {"oracle": dict(sorted(self.counts.items())), "tables": len(self._truth)}

    # --- policy --------------------------------------------------------------------------
    def answer(self, request: ChatRequest) -> tuple[str, bool]:
        """(completion text, whether it is a deliberate error) for a policy request."""
        sid = prompt_id(request.messages, request.tools)
        label = self.truth(sid)
        if label is None and sid in self._alt:
            sid = self._alt[sid]
            label = self.truth(sid)
        if label is None:
            self.counts["unknown_prompt"] += 1
            return TEXTS["irrelevant"], False
        self.counts["answered"] += 1
        if _unit(self.spec.seed, self.checkpoint, sid, "error") >= self.spec.error_rate:
            return _right(label), False
        kind = self._error_kind(sid)
        text = _wrong(label, kind, request.tools or [], _unit(self.spec.seed, sid, "value"))
        self.counts[f"wrong_{kind}"] += 1
        self.counts["wrong"] += 1
        return text, True

    def _error_kind(self, sid: str) -> str:
        u = _unit(self.spec.seed, self.checkpoint, sid, "kind")
        for kind, share in self._kinds:
            if u < share:
                return kind
            u -= share
        return self._kinds[-1][0]

    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation]]:
        out = []
        for req in requests:
            if req.task == JUDGE_TASK:
                text, wrong = self.judge_text(req.payload), False
            elif req.task is not None:
                out.append(self._template.generate([req])[0])
                continue
            else:
                text, wrong = self.answer(req)
            n_tok = max(1, len(text) // 4)
            lp = -(0.6 + 1.5 * _unit(text, "lp")) if wrong else -(0.02 + 0.5 * _unit(text, "lp"))
            logprobs = [lp] * n_tok if req.params.logprobs else None
            out.append([Generation(text=text, logprobs=logprobs) for _ in range(req.params.n)])
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        out = []
        for req in requests:
            n_tok = max(1, len(req.completion) // 4)
            out.append(Score(token_logprobs=[-(0.02 + 1.0 * _unit(req.completion, "lp"))] * n_tok))
        return out

    # --- judge ---------------------------------------------------------------------------
    def verdict(self, payload: dict | None) -> tuple[str, str]:
        """(verdict, how it was reached: ``truth`` | ``flipped`` | ``unknown``) for a judge
        payload (see the module docstring); the same for both response orders."""
        if not payload or "sample_id" not in payload:
            raise EngineError(
                "oracle: judge requests need the payload loop/judge/vote.py attaches "
                "(sample_id, order, label, prediction)"
            )
        sid = payload["sample_id"]
        truth = self.truth(sid)
        how = "truth"
        if truth is None:
            how, verdict = "unknown", "PRED_WRONG"  # no truth: the label is trusted
        else:
            label_ok = match_strict(Label.model_validate(payload["label"]), truth).ok
            pred = payload.get("prediction")
            pred_ok = pred is not None and match_strict(Label.model_validate(pred), truth).ok
            if label_ok == pred_ok:
                verdict = "BOTH_CORRECT" if label_ok else "BOTH_WRONG"
            else:
                verdict = "PRED_WRONG" if label_ok else "LABEL_WRONG"
        question = (
            sid,
            canonical_json(payload["label"]),
            canonical_json(payload.get("prediction")),
        )
        if _unit(self.spec.seed, *question, "judge") < self.spec.judge_error_rate:
            others = [v for v in VERDICTS if v != verdict]
            pick = int(_unit(self.spec.seed, *question, "flip") * len(others))
            how, verdict = "flipped", others[pick]
        return verdict, how

    def option(self, payload: dict | None) -> str:
        """The position-relative option of the verdict for the payload's order (counted)."""
        verdict, how = self.verdict(payload)
        assert payload is not None
        self.counts["votes"] += 1
        self.counts[f"votes_{how}"] += 1
        self.counts[f"votes_{verdict}"] += 1
        if verdict in ("BOTH_CORRECT", "BOTH_WRONG"):
            return verdict
        label_first = payload.get("order") == "label_first"
        label_right = verdict == "PRED_WRONG"
        return "ONLY_A" if label_right == label_first else "ONLY_B"

    def judge_text(self, payload: dict | None) -> str:
        text = (
            "ANALYSIS: oracle verdict from the true label (a dry-run engine, not a model).\n"
            "CORRECT APPROACH: the true label."
        )
        if payload is not None and payload.get("expect") == "analysis":
            self.verdict(payload)  # checks the payload; the choice request is the vote
            return text
        return f"{text}\nVERDICT: {self.option(payload)}"

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str]:
        out = []
        for req in requests:
            if req.task == JUDGE_TASK:
                pick = self.option(req.payload)
                if pick not in req.options:
                    raise EngineError(f"oracle: verdict {pick!r} is not one of {list(req.options)}")
                out.append(pick)
            elif req.task is not None:
                out.append(self._template.choose([req])[0])
            else:
                raise EngineError(
                    "oracle: a choice request without a task (judge requests carry task "
                    "'judge' and a payload)"
                )
        return out


# --- answers ----------------------------------------------------------------------------
def _text_of(kind: str | None) -> str:
    return TEXTS.get(kind or "", TEXTS["irrelevant"])


def _right(label: Label) -> str:
    if label.calls:
        return render_calls(label.calls)
    text = label.text or ""
    return text if text.strip() and no_call_kind(text) == label.kind else _text_of(label.kind)


def _other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return f"{value} (other)" if value else "other"
    if isinstance(value, list):
        return value[:-1] if value else ["other"]
    if isinstance(value, dict):
        return {}
    return "other"


def _surface(value: str) -> str | None:
    """``value`` in other case (equal after tier 0's case folding), None if it has no
    letters to change."""
    for variant in (value.upper(), value.lower(), value.swapcase()):
        if variant != value:
            return variant
    return None


def _wrong(label: Label, kind: str, tools: Sequence[dict], u: float) -> str:
    names = [t.get("function", t).get("name") for t in tools]
    if label.is_no_call:
        if kind in ("wrong_tool", "wrong_argument") and names:  # a call instead of text
            return render_calls([ToolCall(name=names[0], arguments={})])
        other = "irrelevant" if label.kind == "clarify" else "clarify"
        return TEXTS[other]
    calls = list(label.calls)
    if kind == "surface":
        for i, call in enumerate(calls):
            for key in sorted(call.arguments):
                value = call.arguments[key]
                variant = _surface(value) if isinstance(value, str) else None
                if variant is not None:
                    calls[i] = ToolCall(name=call.name, arguments={**call.arguments, key: variant})
                    return render_calls(calls)
        kind = "wrong_argument"
    if kind == "wrong_tool":
        others = [n for n in names if n != calls[0].name]
        if others:
            calls[0] = ToolCall(name=others[int(u * len(others))], arguments=calls[0].arguments)
            return render_calls(calls)
        kind = "wrong_argument"
    if kind == "wrong_argument":
        for i, call in enumerate(calls):
            if call.arguments:
                keys = sorted(call.arguments)
                key = keys[int(u * len(keys))]
                args = {**call.arguments, key: _other_value(call.arguments[key])}
                calls[i] = ToolCall(name=call.name, arguments=args)
                return render_calls(calls)
    return TEXTS["clarify"]  # a question instead of the call
