"""BFCL data: the categories, the vendored data dir and its JSON-lines files.

A data dir holds ``BFCL_v4_<category>.json`` question files (JSON lines with ``id`` and
``function``) and ``possible_answer/BFCL_v4_<category>.json`` beside them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from looptool.core.match_bfcl import BfclDataError

SCORED_CATEGORIES: tuple[str, ...] = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)  # fmt: skip
EXTRA_CATEGORIES: tuple[str, ...] = ("simple_java", "simple_javascript")
NO_ANSWER_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance", "live_relevance")
ALL_CATEGORIES: tuple[str, ...] = SCORED_CATEGORIES + EXTRA_CATEGORIES + NO_ANSWER_CATEGORIES
# Played against executable environments (looptool.eval.bfcl.multi_turn); their data and
# environments come from the installed bfcl-eval, not from a data dir.
MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
)  # fmt: skip

# The repo's vendored copy (data/bfcl beside the package), used when --data is not given.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "data" / "bfcl"

_ID_RE = re.compile(r"^(?P<cat>[a-z][a-z_]*?)_(?P<idx>\d+(?:-\d+)*)$")
_LEGACY = {"simple": "simple_python"}  # BFCL v3 called simple_python "simple"


def category_of(entry_id: Any) -> str | None:
    """Category of a BFCL id (``live_multiple_862-181-3`` -> ``live_multiple``), else None."""
    if not isinstance(entry_id, str):
        return None
    m = _ID_RE.match(entry_id)
    if m is None:
        return None
    cat = _LEGACY.get(m["cat"], m["cat"])
    return cat if cat in ALL_CATEGORIES or cat in MULTI_TURN_CATEGORIES else None


def read_jsonl(path: Path, key: str = "id") -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-empty line of a BFCL data file; each object must
    hold a string ``key``. Raises BfclDataError naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BfclDataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
                raise BfclDataError(f"{path}:{lineno}: expected an object with a string {key!r}")
            yield lineno, obj


def available_categories(data_dir: str | Path) -> list[str]:
    """Known categories that have a question file in ``data_dir``."""
    d = Path(data_dir)
    return [c for c in ALL_CATEGORIES if (d / f"BFCL_v4_{c}.json").is_file()]
