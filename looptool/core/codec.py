"""Tool-call codec: model text <-> (think, calls, free text).

The output format (DESIGN §6) is an optional ``<think>...</think>`` block followed by
one or more ``<tool_call>{"name": .., "arguments": {..}}</tool_call>`` blocks, or a
plain text answer. Parsing never raises: problems come back as a :class:`ParseError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from looptool.core.types import Label, ToolCall

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

_TAG_RE = re.compile(r"<(/?)tool_call>")
# Inside rendered JSON these tags can only occur within strings; escaping "<" keeps the
# text parseable while json.loads restores the original characters.
_ESCAPES = {t: "\\u003c" + t[1:] for t in (CALL_OPEN, CALL_CLOSE, THINK_OPEN, THINK_CLOSE)}


@dataclass(frozen=True)
class ParseError:
    """Why a completion could not be fully parsed (kind is machine-readable)."""

    kind: str  # unterminated_block | unmatched_close | invalid_json | bad_call_shape
    message: str
    block: int | None = None  # index of the offending <tool_call> block


@dataclass
class ParsedOutput:
    think: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    error: ParseError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_label(self) -> Label | None:
        """The completion as a label (calls, or a no-call answer); None on parse error."""
        if self.error is not None:
            return None
        if self.calls:
            return Label(calls=list(self.calls))
        return Label(text=self.text)


def _split_think(text: str) -> tuple[str | None, str]:
    """Remove think blocks; return (think content, rest)."""
    if THINK_CLOSE in text and (
        THINK_OPEN not in text or text.find(THINK_CLOSE) < text.find(THINK_OPEN)
    ):
        # The chat template opened <think> in the prompt; the completion starts inside it.
        head, _, rest = text.partition(THINK_CLOSE)
        more_think, rest = _split_think(rest)
        parts = [head.strip()] + ([more_think] if more_think else [])
        return "\n".join(parts), rest
    thinks: list[str] = []
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(THINK_OPEN, pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find(THINK_CLOSE, start)
        if end < 0:
            # Unclosed think: everything after it is reasoning, never calls.
            thinks.append(text[start + len(THINK_OPEN) :].strip())
            break
        thinks.append(text[start + len(THINK_OPEN) : end].strip())
        pos = end + len(THINK_CLOSE)
    return ("\n".join(thinks) if thinks else None), "".join(out)


def _decode_call(raw: str, index: int) -> ToolCall | ParseError:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = getattr(exc, "msg", "too deeply nested")
        return ParseError("invalid_json", f"tool_call block {index}: invalid JSON ({msg})", index)
    if not isinstance(obj, dict):
        return ParseError("bad_call_shape", f"tool_call block {index}: not a JSON object", index)
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return ParseError("bad_call_shape", f"tool_call block {index}: missing 'name'", index)
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return ParseError(
                "invalid_json", f"tool_call block {index}: 'arguments' string is not JSON", index
            )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ParseError(
            "bad_call_shape", f"tool_call block {index}: 'arguments' is not an object", index
        )
    return ToolCall(name=name, arguments=args)


def parse_completion(text: str) -> ParsedOutput:
    """Parse model output text. Never raises; see ``ParsedOutput.error``."""
    if not isinstance(text, str):
        return ParsedOutput(error=ParseError("bad_call_shape", "completion is not a string"))
    think, body = _split_think(text)
    calls: list[ToolCall] = []
    free: list[str] = []
    error: ParseError | None = None
    pos = 0
    index = 0
    for m in _TAG_RE.finditer(body):
        if m.start() < pos:
            continue
        if m.group(1):  # a closing tag with no open block
            error = error or ParseError("unmatched_close", "</tool_call> without <tool_call>")
            free.append(body[pos : m.start()])
            pos = m.end()
            continue
        free.append(body[pos : m.start()])
        end = body.find(CALL_CLOSE, m.end())
        nxt = body.find(CALL_OPEN, m.end())
        if end < 0 or (0 <= nxt < end):
            error = error or ParseError(
                "unterminated_block", f"tool_call block {index} is not closed", index
            )
            stop = nxt if 0 <= nxt else len(body)
            pos = stop
            index += 1
            continue
        decoded = _decode_call(body[m.end() : end].strip(), index)
        if isinstance(decoded, ParseError):
            error = error or decoded
        else:
            calls.append(decoded)
        pos = end + len(CALL_CLOSE)
        index += 1
    free.append(body[pos:])
    return ParsedOutput(think=think, calls=calls, text="".join(free).strip(), error=error)


def _dump(obj: object) -> str:
    s = json.dumps(obj, ensure_ascii=False, sort_keys=False)
    for tag, esc in _ESCAPES.items():
        s = s.replace(tag, esc)
    return s


def render_call(call: ToolCall) -> str:
    """One call in the canonical prompt/label text form."""
    args = json.loads(json.dumps(call.arguments, sort_keys=True))
    return f"{CALL_OPEN}\n{_dump({'name': call.name, 'arguments': args})}\n{CALL_CLOSE}"


def render_calls(calls: list[ToolCall]) -> str:
    return "\n".join(render_call(c) for c in calls)


def render_label(label: Label) -> str:
    """The assistant text a label stands for (calls, or the no-call answer)."""
    return render_calls(label.calls) if label.calls else (label.text or "")
