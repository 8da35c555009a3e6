"""Strict reading of a free-text judgement: never guesses a verdict.

The judge is asked for ``ANALYSIS:``, ``CORRECT APPROACH:`` and one ``VERDICT: <option>``
line. Exactly one verdict line holding a known option is accepted; none, several, or an
unknown word make the judgement unparsed (the caller records it as UNPARSED with the raw
text). Think blocks are removed first so reasoning cannot leak a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Position-relative options: which of the two shown candidates is correct.
VERDICT_OPTIONS: tuple[str, ...] = ("ONLY_A", "ONLY_B", "BOTH_CORRECT", "BOTH_WRONG")

_THINK_RE = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_VERDICT_RE = re.compile(r"^[ \t]*VERDICT[ \t]*:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_SECTION_RE = re.compile(
    r"^[ \t]*(ANALYSIS|CORRECT APPROACH)[ \t]*:[ \t]*(.*?)(?=^[ \t]*(?:ANALYSIS|CORRECT APPROACH|VERDICT)[ \t]*:|\Z)",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Judgement:
    option: str | None  # one of VERDICT_OPTIONS, or None when unparsed
    analysis: str | None
    approach: str | None
    error: str | None  # why no option was read


def strip_think(text: str) -> str:
    """Remove think blocks (an unclosed one runs to the end of the text)."""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        text = text.split("</think>", 1)[1]  # the template opened the block in the prompt
    return _THINK_RE.sub("", text)


def sections(text: str) -> tuple[str | None, str | None]:
    """(analysis, correct approach) when present."""
    found = {k: v.strip() or None for k, v in _SECTION_RE.findall(strip_think(text))}
    return found.get("ANALYSIS"), found.get("CORRECT APPROACH")


def parse_judgement(text: str, options: tuple[str, ...] = VERDICT_OPTIONS) -> Judgement:
    """Read the verdict strictly; see the module docstring."""
    body = strip_think(text or "")
    analysis, approach = sections(body)
    values = _VERDICT_RE.findall(body)
    if not values:
        return Judgement(None, analysis, approach, "no VERDICT line")
    if len(values) > 1:
        return Judgement(None, analysis, approach, f"{len(values)} VERDICT lines")
    value = values[0]
    if value not in options:
        return Judgement(None, analysis, approach, f"unknown verdict {value[:40]!r}")
    return Judgement(value, analysis, approach, None)
