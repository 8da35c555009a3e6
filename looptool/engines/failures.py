"""Stage-side handling of per-request :class:`~looptool.engines.base.Failed` results.

A backend puts ``Failed(reason)`` where one request's result would be (prompt longer than
the model, a server's 4xx on it). Stages never crash on it and never drop the item
silently: they record a reject row / per-item error that names the item and carries
:func:`failure_note`, and count the failures in their metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from looptool.engines.base import Failed

ENGINE_FAILED = "engine_failed"  # the reject tier / match reason of a failed request


def failure_note(result: Failed) -> str:
    """The one-line reason recorded for an item whose request failed."""
    return f"{ENGINE_FAILED}: {result.reason}"


def first_text(result: Any) -> str | None:
    """The first generation's text of a ``generate`` result; None for a :class:`Failed`."""
    return None if isinstance(result, Failed) else result[0].text


def failed_items(item_ids: Sequence[str], results: Sequence[Any]) -> list[dict[str, str]]:
    """``{"item": id, "reason": note}`` per failed result (for stage metrics), in order."""
    return [
        {"item": str(i), "reason": failure_note(r)}
        for i, r in zip(item_ids, results, strict=True)
        if isinstance(r, Failed)
    ]
