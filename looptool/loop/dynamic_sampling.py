"""DAPO dynamic sampling for TRL's GRPOTrainer (``train.dynamic_sampling``).

A group whose completions all earn the same reward has zero advantage: it costs a
rollout and a backward pass and teaches nothing. With a weak policy most call-labelled
groups are all-zero, so the few no-call groups with variance steer every step (the
text-only collapse, DESIGN §9). DAPO drops such groups and refills the batch with groups
of fresh prompts; TRL 1.16's trainer has no such option (TRL issue #3708), so this
subclass does it around ``_generate_and_score_completions``: after a batch is scored,
zero-variance groups are replaced by varied groups generated for randomly drawn prompts
of the training set, for at most ``max_rounds`` extra generation rounds; a batch still
short after that keeps some zero-variance groups (logged as ``varied_group_share`` < 1).

Single process only: TRL spreads one group's completions over ranks, so dropping a group
needs a cross-rank decision this class does not make (checked at start).
"""

from __future__ import annotations

import random
from typing import Any

# Output keys of GRPOTrainer._generate_and_score_completions this class can re-batch:
# prompt-aligned tensors are left-padded, completion-aligned ones right-padded.
_PROMPT_KEYS = ("prompt_ids", "prompt_mask")
_COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "sampling_per_token_logps",
    "ref_per_token_logps",
    "importance_sampling_ratio",
)
_ROW_KEYS = ("advantages",)


def varied_groups(advantages, group_size: int) -> list[int]:
    """Indices of groups whose advantages are not all zero (rewards not all equal)."""
    per_group = advantages.view(-1, group_size)
    return [i for i, row in enumerate(per_group) if bool((row != 0).any())]


def _pad_cat(parts: list, side: str, value: float):
    import torch
    import torch.nn.functional as F

    width = max(p.shape[1] for p in parts)
    padded = []
    for p in parts:
        gap = width - p.shape[1]
        pad = (gap, 0) if side == "left" else (0, gap)
        padded.append(F.pad(p, pad, value=value) if gap else p)
    return torch.cat(padded, dim=0)


def regroup(batches: list[dict[str, Any]], picks: list[tuple[int, int]], group_size: int,
            pad_token_id: int) -> dict[str, Any]:  # fmt: skip
    """One scored batch made of groups ``picks`` = [(batch index, group index), ...]."""
    import torch

    unknown = {k for b in batches for k, v in b.items() if v is not None} - {
        *_PROMPT_KEYS, *_COMPLETION_KEYS, *_ROW_KEYS, "num_items_in_batch"
    }  # fmt: skip
    if unknown:
        raise ValueError(f"dynamic sampling cannot re-batch trainer outputs {sorted(unknown)}")

    def rows(g: int) -> slice:
        return slice(g * group_size, (g + 1) * group_size)

    out: dict[str, Any] = {}
    for key in (*_PROMPT_KEYS, *_COMPLETION_KEYS, *_ROW_KEYS):
        if batches[0].get(key) is None:
            continue
        parts = [batches[b][key][rows(g)] for b, g in picks]
        if key in _ROW_KEYS:
            out[key] = torch.cat(parts, dim=0)
        elif key in _PROMPT_KEYS:
            out[key] = _pad_cat(parts, "left", pad_token_id if key == "prompt_ids" else 0)
        else:
            fill = 1.0 if key == "importance_sampling_ratio" else 0
            out[key] = _pad_cat(parts, "right", pad_token_id if key == "completion_ids" else fill)
    # The loss normalizer: completion tokens in the batch (one process: no gather needed).
    out["num_items_in_batch"] = out["completion_mask"].sum()
    return out


def dynamic_sampling_trainer(*args: Any, max_rounds: int, seed: int, **kwargs: Any):
    """A GRPOTrainer (same arguments) that refills zero-variance groups, DAPO style."""
    from trl import GRPOTrainer

    class DynamicSamplingGRPOTrainer(GRPOTrainer):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._ds_rng = random.Random(f"dynamic-sampling:{seed}")

        def _fresh_inputs(self, n_groups: int) -> list[dict]:
            data = self.train_dataset
            picks = [self._ds_rng.randrange(len(data)) for _ in range(n_groups)]
            return [dict(data[i]) for i in picks for _ in range(self.num_generations)]

        def _generate_and_score_completions(self, inputs):
            first = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return first
            size = self.num_generations
            n_groups = len(first["advantages"]) // size
            batches = [first]
            keep = [(0, g) for g in varied_groups(first["advantages"], size)]
            rounds = 0
            while len(keep) < n_groups and rounds < max_rounds:
                rounds += 1
                more = super()._generate_and_score_completions(self._fresh_inputs(n_groups))
                batches.append(more)
                keep += [(rounds, g) for g in varied_groups(more["advantages"], size)]
            varied = min(len(keep), n_groups)
            self._metrics["train"]["dynamic_sampling/rounds"].append(float(rounds))
            self._metrics["train"]["dynamic_sampling/varied_group_share"].append(varied / n_groups)
            if rounds == 0:
                return first
            flat = [(0, g) for g in range(n_groups) if (0, g) not in keep]
            picks = (keep + flat)[:n_groups]
            pad = self._tokenizer.pad_token_id
            return regroup(batches, picks, size, pad)

    return DynamicSamplingGRPOTrainer(*args, **kwargs)
