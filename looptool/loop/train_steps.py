"""Per-step rows read from a trainer's log history and the summaries of a run that
``train_metrics.json`` holds (first/last-window reward means, run averages); the
per-step curves themselves are DVCLive's files (:mod:`looptool.loop.train_logging`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from looptool.core.match import KIND_GROUPS

# Trainer log keys -> names in the per-step rows train_metrics.json summarizes (TRL 1.16
# names; the per-step curves themselves are DVCLive's files, see train_logging).
PLOT_COLUMNS: dict[str, str] = {
    "reward": "reward",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "zero_variance_group_share",
    "toolmatch/match_rate": "match_rate",
    "toolmatch/parse_failure_rate": "parse_failure_rate",
    "toolmatch/tool_call_rate": "tool_call_rate",
    "toolmatch/reward_call": "reward_call",
    "toolmatch/reward_clarify": "reward_clarify",
    "toolmatch/reward_irrelevant": "reward_irrelevant",
    "dynamic_sampling/rounds": "dynamic_sampling_rounds",
    "dynamic_sampling/varied_group_share": "varied_group_share",
    "dynamic_sampling/discarded_groups": "discarded_groups",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "entropy": "entropy",
    "completions/mean_length": "completion_mean_length",
    "completions/clipped_ratio": "completion_clipped_ratio",
    "clip_ratio/region_mean": "clip_ratio",
}


def step_rows(log_history: Sequence[dict]) -> list[dict]:
    """One row per logged optimizer step with the columns of :data:`PLOT_COLUMNS` (what
    :func:`summarize_steps` and the SFT summary read; DVCLive writes the curves)."""
    rows = []
    for entry in log_history:
        if "step" not in entry or not any(k in entry for k in ("loss", "reward")):
            continue
        row: dict[str, Any] = {"step": int(entry["step"])}
        if "epoch" in entry:  # the trainer logs the fraction done; a step's epoch is 1-based
            row["epoch"] = max(1, math.ceil(float(entry["epoch"]) - 1e-9))
        for key, col in PLOT_COLUMNS.items():
            value = entry.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                row[col] = float(value)
        rows.append(row)
    return rows


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def summarize_steps(rows: Sequence[dict], window: int) -> dict[str, Any]:
    """Metrics over the per-step rows: first/last-window reward means and run averages."""
    col = lambda name: [r[name] for r in rows if name in r]  # noqa: E731
    rewards = col("reward")
    grad = col("grad_norm")
    w = max(1, min(window, len(rewards) // 2 or 1))
    by_epoch: dict[int, list[float]] = {}
    for r in rows:
        if "reward" in r and "epoch" in r:
            by_epoch.setdefault(r["epoch"], []).append(r["reward"])
    return {
        "steps": len(rows),
        "reward_window": w,
        "reward_mean_first": _mean(rewards[:w]),
        "reward_mean_last": _mean(rewards[-w:]),
        "reward_mean": _mean(rewards),
        # Every epoch revisits the same prompts, so this is the cleanest learning signal.
        "reward_mean_by_epoch": [_mean(by_epoch[e]) for e in sorted(by_epoch)],
        "reward_std_mean": _mean(col("reward_std")),
        "zero_variance_group_share": _mean(col("zero_variance_group_share")),
        "match_rate": _mean(col("match_rate")),
        "parse_failure_rate": _mean(col("parse_failure_rate")),
        # Rollouts holding a call: a fall here is the text-only collapse starting.
        "tool_call_rate_first": _mean(col("tool_call_rate")[:w]),
        "tool_call_rate_last": _mean(col("tool_call_rate")[-w:]),
        "reward_by_kind": {g: _mean(col(f"reward_{g}")) for g in KIND_GROUPS if col(f"reward_{g}")},
        "dynamic_sampling_rounds_mean": _mean(col("dynamic_sampling_rounds")),
        "varied_group_share": _mean(col("varied_group_share")),
        "loss_mean": _mean(col("loss")),
        "grad_norm_mean": _mean(grad),
        "grad_norm_max": max(grad) if grad else None,
        "steps_with_grad": sum(g > 0 for g in grad),
        "completion_mean_length": _mean(col("completion_mean_length")),
    }
