"""Pull one JSON value out of model text (think blocks, code fences and chatter around it)."""

from __future__ import annotations

import json
import re
from typing import Any

from looptool.core.codec import parse_completion

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_OPENERS = {dict: "{", list: "["}


def extract_json(text: str, want: type | tuple[type, ...] = dict) -> tuple[Any, str | None]:
    """(value, None) for the first JSON value of type ``want`` in ``text``, else (None, why).

    ``want`` is ``dict``, ``list`` or a tuple of both; the earliest decodable value wins.
    """
    kinds = want if isinstance(want, tuple) else (want,)
    openers = [_OPENERS[k] for k in kinds]
    parsed = parse_completion(text)
    body = parsed.text if parsed.ok else text
    candidates = [m.group(1) for m in _FENCE.finditer(body)] + [body]
    decoder = json.JSONDecoder()
    for cand in candidates:
        starts = sorted(i for i, ch in enumerate(cand) if ch in openers)
        for pos in starts:
            try:
                value, _ = decoder.raw_decode(cand, pos)
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(value, kinds):
                return value, None
    snippet = " ".join(text.split())[:80]
    kind = " or ".join("object" if k is dict else "array" for k in kinds)
    return None, f"no JSON {kind} in the output (starts: {snippet!r})"
