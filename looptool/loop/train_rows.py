"""The rows a training run reads and keeps, the same for GRPO and SFT: a SAMPLES/DATASET
table read into samples (:func:`read_samples`) and the seeded choice of the rows a run
trains on (:func:`select_training_rows`: equal budgets, a no-call share); and
:class:`TrainError`, how training says it cannot start or finish.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from looptool.core.tables import sample_from_row
from looptool.core.types import Sample
from looptool.store.io import read_parquet

_REQUIRED_COLUMNS = ("sample_id", "tools", "context", "label")


class TrainError(RuntimeError):
    """Training cannot start or finish; the message names the file, row or param."""


@dataclass
class LoadedSamples:
    """Samples read from a table, with their stored ids and label JSON."""

    samples: list[Sample]
    sample_ids: list[str]
    labels: list[str]  # canonical label JSON as stored (the reward's input)
    kinds: list[str] = field(default_factory=list)  # the table's `kind` column ("" if absent)
    # D_j's `split` column (ES / EE / HPPL / SEED ...); empty for a table without one
    splits: list[str] = field(default_factory=list)


def read_samples(
    path: str | os.PathLike, max_samples: int | None = None, seed: int = 0
) -> LoadedSamples:
    """Samples of a SAMPLES/DATASET table; ``max_samples`` keeps a seeded random subset.

    A row that does not decode raises a TrainError naming the file, row and sample id.
    """
    try:
        table = read_parquet(path)
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from None
    missing = [c for c in _REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainError(f"{path}: missing columns {missing}")
    cols = [*_REQUIRED_COLUMNS, *(c for c in ("kind", "split") if c in table.column_names)]
    rows = table.select(cols).to_pylist()
    index = list(range(len(rows)))
    if max_samples is not None and len(rows) > max_samples:
        index = sorted(random.Random(seed).sample(index, max_samples))
    out = LoadedSamples([], [], [])
    for i in index:
        row = rows[i]
        try:
            sample = sample_from_row(row)
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainError(
                f"{path}: row {i} (sample_id {row.get('sample_id')}): cannot decode sample: {exc}"
            ) from None
        out.samples.append(sample)
        out.sample_ids.append(row["sample_id"])
        out.labels.append(row["label"])
        out.kinds.append(row.get("kind") or "")
        if "split" in row:
            out.splits.append(row["split"] or "")
    return out


@dataclass
class Selection:
    """The rows a trainer uses (indexes into a LoadedSamples, in table order) and why."""

    rows: list[int]
    metrics: dict[str, Any]


def select_training_rows(
    loaded: LoadedSamples,
    fits: Sequence[bool],
    *,
    max_samples: int | None,
    max_no_call_share: float,
    seed: int,
) -> Selection:
    """The training set of one run, the same rule for SFT and GRPO (equal budgets).

    Rows that do not fit the length limit (``fits`` False) are left out first, so every
    run gets ``max_samples`` rows whenever that many fit. Then ``n = min(max_samples,
    fitting)`` rows are drawn (seeded): with ``max_no_call_share`` < 1 the no-call rows
    get a quota of ``round(share x n)``, at least 1 when the share is positive and the
    table has a no-call row (a small n never rounds the kind away), and call rows fill
    the rest; when call rows run short the no-call rows are cut back to the share of the
    calls available, and the set is smaller than n (``shortfall``).
    """
    fitting = [i for i, ok in enumerate(fits) if ok]
    target = len(fitting) if max_samples is None else max_samples
    n = min(target, len(fitting))
    rng = random.Random(f"train-rows:{seed}")
    no_call = [i for i in fitting if loaded.samples[i].label.is_no_call]
    calls = [i for i in fitting if not loaded.samples[i].label.is_no_call]
    share = max_no_call_share
    if share >= 1.0 or not no_call:
        rows = fitting if n == len(fitting) else rng.sample(fitting, n)
        quota = None
    else:
        least = 1 if share > 0 else 0  # a positive share never rounds the kind away
        quota = min(len(no_call), max(least, round(share * n)))
        n_calls = min(len(calls), n - quota)
        if n_calls < n - quota:
            # too few call rows: keep no-call rows at the share of the calls there are
            quota = min(quota, max(least, round(share * n_calls / (1.0 - share))))
        rows = rng.sample(calls, n_calls) + rng.sample(no_call, quota)
    rows = sorted(rows)

    def counts(labels: list[str], index: Iterable[int]) -> dict[str, int]:
        found = Counter((labels[i] if labels else "") or "unknown" for i in index)
        return dict(sorted(found.items()))

    n_no_call = sum(loaded.samples[i].label.is_no_call for i in rows)
    metrics = {
        "samples": len(loaded.samples),
        "samples_fitting": len(fitting),
        "samples_too_long": len(loaded.samples) - len(fitting),
        "samples_target": target,
        "samples_trained": len(rows),
        "samples_shortfall": target - len(rows),
        "no_call_rows": n_no_call,
        "no_call_quota": quota,
        "no_call_share": n_no_call / len(rows) if rows else None,
        "no_call_rows_left_out": len(no_call) - n_no_call if quota is not None else 0,
        "kinds_dataset": counts(loaded.kinds, range(len(loaded.samples))),
        "kinds_trained": counts(loaded.kinds, rows),
    }
    if loaded.splits:
        # where the length limit bites: the loop's ES / EE rows are often its longest
        too_long = [i for i, ok in enumerate(fits) if not ok]
        metrics["splits_dataset"] = counts(loaded.splits, range(len(loaded.samples)))
        metrics["splits_trained"] = counts(loaded.splits, rows)
        metrics["splits_too_long"] = counts(loaded.splits, too_long)
    return Selection(rows, metrics)
