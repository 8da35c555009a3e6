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
The step's logs describe the batch it trains on, not every rollout generated: after a
refill, reward / reward_std / frac_reward_zero_std, ``rewards/<f>/*`` and the reward's
``toolmatch/*`` values and counts are recomputed over the kept groups; the discarded
groups are counted apart (``dynamic_sampling/discarded_groups``, ``discarded_*`` in the
metrics file).

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


# Trainer log keys recomputed over the trained batch after a refill (TRL 1.16 names);
# ``rewards/<name>/mean|std`` too. Every other key a refill round appended is folded into
# one value per step: min / max keys over the rounds trained on, the rest as the mean of
# the rounds' values weighted by how many groups each round gave the batch.
_REWARD_KEYS = ("reward", "reward_std", "frac_reward_zero_std")


def trained_reward_metrics(
    rewards_per_func, weights, names: list[str], group_size: int
) -> dict[str, float]:
    """TRL's reward log values for the rows of one batch: ``rewards_per_func`` [rows,
    funcs] as TRL computes it, rows grouped ``group_size`` at a time."""
    import torch
    from trl.trainer.utils import nanstd

    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"rewards/{name}/mean"] = torch.nanmean(rewards_per_func[:, i]).item()
        out[f"rewards/{name}/std"] = nanstd(rewards_per_func[:, i]).item()
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    out["reward"] = torch.nanmean(rewards).item()
    out["reward_std"] = nanstd(rewards).item()
    per_group = nanstd(rewards.view(-1, group_size), dim=1) if group_size > 1 else None
    zero = (
        torch.isclose(per_group, torch.zeros_like(per_group)).float().mean().item()
        if per_group is not None
        else 1.0
    )
    out["frac_reward_zero_std"] = zero
    return out


def fold_round_values(values: list[list[float]], weights: list[int], key: str) -> float | None:
    """One value for a key TRL logged once per round: ``values[r]`` are round r's
    entries, ``weights[r]`` the groups round r gave the trained batch (0: none)."""
    used = [(v, w) for vs, w in zip(values, weights, strict=True) for v in vs if w]
    if not used:
        return None
    if key.endswith("/min"):
        return min(v for v, _ in used)
    if key.endswith("/max"):
        return max(v for v, _ in used)
    return sum(v * w for v, w in used) / sum(w for _, w in used)


def dynamic_sampling_class(base: type) -> type:
    """``base`` (TRL's GRPOTrainer) with DAPO refills of zero-variance groups.

    Logs describe the batch trained on: after a refill, TRL's reward values and ours
    (``toolmatch/*``, :class:`~looptool.loop.reward.RewardStats`) are recomputed over the
    kept groups; the completions thrown away are counted apart
    (``dynamic_sampling/discarded_groups``, the reward's ``discarded`` stats)."""
    from looptool.loop.reward import ToolMatchReward

    class DynamicSamplingGRPOTrainer(base):
        def __init__(self, *a: Any, max_rounds: int, seed: int, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._ds_rng = random.Random(f"dynamic-sampling:{seed}")
            self._ds_max_rounds = max_rounds
            self._ds_rewards: list[Any] = []  # rewards_per_func of each round of a step
            self._ds_ours = [f for f in self.reward_funcs if isinstance(f, ToolMatchReward)]
            for f in self._ds_ours:
                f.defer = True

        def _fresh_inputs(self, n_groups: int) -> list[dict]:
            data = self.train_dataset
            picks = [self._ds_rng.randrange(len(data)) for _ in range(n_groups)]
            return [dict(data[i]) for i in picks for _ in range(self.num_generations)]

        def _calculate_rewards(self, *a: Any, **kw: Any):
            out = super()._calculate_rewards(*a, **kw)
            self._ds_rewards.append(out)
            return out

        def _commit_ours(self, rows: list[tuple[int, int]], metrics: dict) -> None:
            for f in self._ds_ours:
                for name, value in f.commit(rows).items():
                    metrics[name].append(value)

        def _generate_and_score_completions(self, inputs):
            self._ds_rewards.clear()
            metrics = self._metrics["train" if self.model.training else "eval"]
            before = {k: len(v) for k, v in metrics.items()}
            first = super()._generate_and_score_completions(inputs)
            size = self.num_generations
            n_rows = len(first["advantages"])
            if not self.model.training:
                self._commit_ours([(0, r) for r in range(n_rows)], metrics)
                return first
            n_groups = n_rows // size
            batches = [first]
            # what round 0 logged, per key; later rounds' entries are cut apart below
            marks = [{k: len(v) for k, v in metrics.items()}]
            keep = [(0, g) for g in varied_groups(first["advantages"], size)]
            rounds = 0
            while len(keep) < n_groups and rounds < self._ds_max_rounds:
                rounds += 1
                more = super()._generate_and_score_completions(self._fresh_inputs(n_groups))
                batches.append(more)
                marks.append({k: len(v) for k, v in metrics.items()})
                keep += [(rounds, g) for g in varied_groups(more["advantages"], size)]
            flat = [(0, g) for g in range(n_groups) if (0, g) not in keep]
            picks = (keep + flat)[:n_groups]
            trained = [(b, g * size + k) for b, g in picks for k in range(size)]
            if rounds:
                self._log_trained_batch(metrics, before, marks, picks, trained, size)
            self._commit_ours(trained, metrics)
            varied = min(len(keep), n_groups)
            metrics["dynamic_sampling/rounds"].append(float(rounds))
            metrics["dynamic_sampling/varied_group_share"].append(varied / n_groups)
            metrics["dynamic_sampling/discarded_groups"].append(
                float(n_groups * rounds)  # generated beyond the batch, never trained on
            )
            if rounds == 0:
                return first
            pad = self._tokenizer.pad_token_id
            return regroup(batches, picks, size, pad)

        def _log_trained_batch(self, metrics, before, marks, picks, trained, size) -> None:
            """Replace what the rounds appended by values of the trained batch."""
            import torch

            weights = [sum(b == r for b, _ in picks) for r in range(len(marks))]
            starts = [before, *marks[:-1]]
            for key in list(metrics):
                values = metrics[key]
                if len(values) == before.get(key, 0):
                    continue  # not appended per round (e.g. num_tokens is reassigned)
                per_round = [
                    values[s.get(key, 0) : e.get(key, 0)]
                    for s, e in zip(starts, marks, strict=True)
                ]
                del values[before.get(key, 0) :]
                folded = fold_round_values(per_round, weights, key)
                if folded is not None:
                    values.append(folded)
            rows = torch.stack([self._ds_rewards[b][r] for b, r in trained])
            recomputed = trained_reward_metrics(
                rows, self.reward_weights, list(self.reward_func_names), size
            )
            for key, value in recomputed.items():
                series = metrics[key]
                if len(series) > before.get(key, 0):
                    series[-1] = value
                else:
                    series.append(value)

    return DynamicSamplingGRPOTrainer


def dynamic_sampling_trainer(*args: Any, max_rounds: int, seed: int, **kwargs: Any):
    """A GRPOTrainer (same arguments) that refills zero-variance groups, DAPO style."""
    from trl import GRPOTrainer

    cls = dynamic_sampling_class(GRPOTrainer)
    return cls(*args, max_rounds=max_rounds, seed=seed, **kwargs)
