"""What a training record (train_metrics.json, warmstart_metrics.json) says, read one way
by ``looptool status``, ``looptool compare`` and train@j's warning."""

from __future__ import annotations


def rows_too_long(metrics: dict) -> int | None:
    """Rows of a training table over the length limit, never trained on (None when not
    recorded). Records written before ``samples_too_long`` existed give ``samples -
    samples_fitting``."""
    if (recorded := metrics.get("samples_too_long")) is not None:
        return recorded
    n, fitting = metrics.get("samples"), metrics.get("samples_fitting")
    return None if n is None or fitting is None else n - fitting
