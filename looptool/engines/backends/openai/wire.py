"""The OpenAI chat wire format <-> our requests and results, normalised like the hf engine.

A reply comes back as the text the hf engine would return for the same generation:
a reasoning field (``reasoning_content`` / ``reasoning``) becomes a ``<think>`` block
(left open when the reply was cut inside it), structured ``tool_calls`` are rendered to
canonical ``<tool_call>`` text (looptool.core.codec.render_calls), and the text is cut at
the first stop string (servers such as ``transformers serve`` leave it in).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from looptool.core.codec import THINK_CLOSE, THINK_OPEN, render_calls
from looptool.core.types import ToolCall
from looptool.engines.base import Generation, first_stop


def to_wire_messages(messages: list[dict]) -> list[dict]:
    """Our chat messages -> the OpenAI wire form: tool-call arguments as JSON strings,
    call ids, and ``tool_call_id`` on tool results (matched to calls in order)."""
    out: list[dict] = []
    open_ids: list[str] = []
    for t, m in enumerate(messages):
        w = {k: v for k, v in m.items() if k != "tool_calls"}
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls, open_ids = [], []
            for k, tc in enumerate(m["tool_calls"]):
                fn = tc.get("function", tc)
                args = fn.get("arguments", {})
                cid = tc.get("id") or f"call_{t}_{k}"
                open_ids.append(cid)
                calls.append(
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": fn["name"],
                            "arguments": args
                            if isinstance(args, str)
                            else json.dumps(args, ensure_ascii=False),
                        },
                    }
                )
            w["tool_calls"] = calls
        elif m.get("role") == "tool" and "tool_call_id" not in m and open_ids:
            w["tool_call_id"] = open_ids.pop(0)
        if w.get("content") is None and m.get("role") != "assistant":
            w["content"] = ""
        out.append(w)
    return out


def _server_calls(message: dict) -> list[ToolCall]:
    calls = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function", tc)
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = {"__unparsed__": args}  # keep the raw text visible; ToolMatch rejects it
        if not isinstance(args, dict):
            args = {"__unparsed__": args}
        calls.append(ToolCall(name=fn.get("name", ""), arguments=args))
    return calls


def reply_text(message: dict, stop: Sequence[str] = (), cut_short: bool = False) -> str:
    """Assistant reply (reasoning, content, structured tool calls) as one text string.

    ``cut_short``: the reply hit max_tokens, so a reasoning field without any content
    after it was cut inside the think block, which stays open (as the model wrote it)."""
    content = message.get("content") or ""
    at = first_stop(content, stop)
    if at is not None:
        content = content[:at]
    calls = _server_calls(message)
    text = content
    if calls:
        text = (text + "\n" if text else "") + render_calls(calls)
    think = message.get("reasoning_content") or message.get("reasoning")
    if think:
        if cut_short and not text:
            return f"{THINK_OPEN}\n{think}"
        text = f"{THINK_OPEN}\n{think}\n{THINK_CLOSE}\n\n{text}"
    return text


def choice_generation(choice: dict, stop: Sequence[str] = ()) -> Generation:
    """One ``choices[]`` entry of a chat-completions reply as a :class:`Generation`."""
    lp = None
    content_lp = (choice.get("logprobs") or {}).get("content")
    if content_lp:
        lp = [float(t["logprob"]) for t in content_lp]
    cut_short = choice.get("finish_reason") == "length"
    ids = choice.get("token_ids")
    return Generation(
        text=reply_text(choice.get("message") or {}, stop, cut_short),
        token_ids=[int(t) for t in ids] if isinstance(ids, list) else None,
        logprobs=lp,
        finish_reason="length" if cut_short else "stop",
    )


def match_option(text: str, options: Sequence[str]) -> str | None:
    """``text`` as one of ``options``: exact after stripping, else the only option the
    text mentions (as a whole word); None if there is no such unique option."""
    t = text.strip()
    if t in options:
        return t
    hits = [o for o in options if re.search(rf"(?<![\w]){re.escape(o)}(?![\w])", t)]
    # An option contained in a longer mentioned option (A vs A_B) is not a separate hit.
    hits = [o for o in hits if not any(o != h and o in h for h in hits)]
    return hits[0] if len(hits) == 1 else None
