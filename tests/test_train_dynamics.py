"""GRPO knobs against the text-only collapse: per-kind reward metrics, the graded reward,
the no-call cap, DAPO dynamic sampling (unit + a tiny real run) and the guard verdict."""

from __future__ import annotations

import pytest
import torch
from test_train import DATE, SMOKE, synthetic_samples, write_samples

from looptool.core.codec import render_calls
from looptool.core.types import Label, ToolCall, canonical_json
from looptool.loop.dynamic_sampling import dynamic_sampling_class, regroup, varied_groups
from looptool.loop.guard import collapse_kind, guard_verdict
from looptool.loop.reward import ToolMatchReward
from looptool.loop.train import train_grpo
from looptool.loop.train_rows import LoadedSamples, select_training_rows
from looptool.params.train import GuardParams

CALL = ToolCall(name="get_weather", arguments={"city": "Paris", "days": 2})


def lj(label: Label) -> str:
    return canonical_json(label.to_json())


def test_reward_logs_tool_call_rate_and_reward_per_kind_group():
    logged: dict[str, float] = {}
    reward = ToolMatchReward()
    labels = [Label(calls=[CALL])] * 2 + [Label(text="Which city?"), Label(text="I can't.")]
    completions = [render_calls([CALL]), "no idea", "For which city?", "Which one?"]
    out = reward(completions, [lj(x) for x in labels], log_metric=logged.__setitem__)
    assert out == [1.0, 0.0, 1.0, 0.0]
    assert logged["toolmatch/tool_call_rate"] == 0.25
    assert logged["toolmatch/reward_call"] == 0.5
    assert (
        logged["toolmatch/reward_clarify"] == 1.0 and logged["toolmatch/reward_irrelevant"] == 0.0
    )


def test_graded_reward_orders_partial_answers_and_keeps_1_for_exact():
    reward = ToolMatchReward("graded")
    gold = Label(calls=[CALL])
    wrong_value = ToolCall(name="get_weather", arguments={"city": "Rome", "days": 2})
    wrong_keys = ToolCall(name="get_weather", arguments={"town": "Paris"})
    wrong_name = ToolCall(name="get_time", arguments={"city": "Paris"})
    texts = [render_calls([c]) for c in (CALL, wrong_value, wrong_keys, wrong_name)]
    texts += ["Sorry, I cannot.", "<tool_call>{broken"]
    r = reward(texts, [lj(gold)] * len(texts))
    assert r[0] == 1.0 and 1.0 > r[1] > r[2] > r[3] > r[4] == r[5] == 0.0
    # binary stays 0/1 on the same completions
    assert ToolMatchReward()(texts, [lj(gold)] * len(texts)) == [1.0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        ToolMatchReward("fuzzy")


def _loaded(samples):
    return LoadedSamples(samples, [str(i) for i in range(len(samples))], ["" for _ in samples])


def test_row_selection_caps_no_call_rows_and_keeps_every_call_row():
    samples = synthetic_samples(40, seed=5)
    loaded = _loaded(samples)
    fits = [True] * 40
    n_call = sum(not s.label.is_no_call for s in samples)
    assert 40 - n_call >= 2  # the fixture mixes kinds

    def pick(**kw):
        return select_training_rows(loaded, fits, seed=0, **kw)

    capped = pick(max_samples=None, max_no_call_share=0.1)
    no_call = [i for i in capped.rows if samples[i].label.is_no_call]
    assert len(capped.rows) - len(no_call) == n_call and len(no_call) / len(capped.rows) <= 0.1
    assert capped.rows == sorted(capped.rows)
    assert pick(max_samples=None, max_no_call_share=0.1).rows == capped.rows
    assert pick(max_samples=None, max_no_call_share=1.0).rows == list(range(40))
    none = pick(max_samples=None, max_no_call_share=0.0).rows
    assert not [i for i in none if samples[i].label.is_no_call]
    # a small budget never rounds a positive share to zero no-call rows
    eight = pick(max_samples=8, max_no_call_share=0.1)
    assert len(eight.rows) == 8 and eight.metrics["no_call_rows"] == 1
    # rows that do not fit are never chosen; the budget is filled from the rest
    short = [i % 3 != 0 for i in range(40)]
    r = select_training_rows(loaded, short, max_samples=20, max_no_call_share=1.0, seed=0)
    assert len(r.rows) == 20 and all(short[i] for i in r.rows)
    assert "splits_too_long" not in r.metrics  # no split column, nothing to count by


def test_row_selection_counts_too_long_and_trained_rows_per_split():
    """D_j's split column says which part of the loop's data the length limit cut away."""
    samples = synthetic_samples(12, seed=5)
    splits = ["ES"] * 4 + ["EE"] * 4 + ["SEED"] * 4
    loaded = LoadedSamples(samples, [str(i) for i in range(12)], [""] * 12, splits=splits)
    fits = [i % 4 == 0 or i >= 8 for i in range(12)]  # one ES, one EE and every SEED fit
    r = select_training_rows(loaded, fits, max_samples=None, max_no_call_share=1.0, seed=0)
    assert r.metrics["splits_dataset"] == {"EE": 4, "ES": 4, "SEED": 4}
    assert r.metrics["splits_too_long"] == {"EE": 3, "ES": 3}
    assert r.metrics["splits_trained"] == {"EE": 1, "ES": 1, "SEED": 4}
    assert r.metrics["samples"] - r.metrics["samples_fitting"] == r.metrics["samples_too_long"] == 6


def test_equal_budgets_whatever_the_no_call_share_of_d_j():
    """Two D_j with different no-call shares train on the same number of rows (so the same
    steps and sequences), under one rule for SFT and GRPO."""
    mixed = synthetic_samples(60, seed=5)
    calls_only = [s for s in synthetic_samples(200, seed=9) if not s.label.is_no_call][:60]
    assert len(calls_only) == 60
    for share in (0.1, 0.3, 1.0):
        a = select_training_rows(
            _loaded(mixed), [True] * 60, max_samples=32, max_no_call_share=share, seed=1
        )
        b = select_training_rows(
            _loaded(calls_only), [True] * 60, max_samples=32, max_no_call_share=share, seed=1
        )
        assert len(a.rows) == len(b.rows) == 32
        assert a.metrics["samples_shortfall"] == b.metrics["samples_shortfall"] == 0


def test_regroup_pads_and_keeps_rows_of_the_picked_groups():
    g = 2
    a = {
        "prompt_ids": torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9]]),
        "prompt_mask": torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[1, 0], [2, 3], [4, 0], [4, 0]]),
        "completion_mask": torch.tensor([[1, 0], [1, 1], [1, 0], [1, 0]]),
        "advantages": torch.tensor([-1.0, 1.0, 0.0, 0.0]),
        "num_items_in_batch": torch.tensor(5),
        "old_per_token_logps": None,
    }
    b = {
        "prompt_ids": torch.tensor([[3, 4], [3, 4]]),
        "prompt_mask": torch.tensor([[1, 1], [1, 1]]),
        "completion_ids": torch.tensor([[1, 2, 3], [4, 0, 0]]),
        "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
        "advantages": torch.tensor([0.5, -0.5]),
        "num_items_in_batch": torch.tensor(4),
        "old_per_token_logps": None,
    }
    assert varied_groups(a["advantages"], g) == [0] and varied_groups(b["advantages"], g) == [0]
    out = regroup([a, b], [(0, 0), (1, 0)], g, pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 5, 6], [0, 5, 6], [0, 3, 4], [0, 3, 4]]
    assert out["prompt_mask"].tolist() == [[0, 1, 1], [0, 1, 1], [0, 1, 1], [0, 1, 1]]
    assert out["completion_ids"].tolist() == [[1, 0, 0], [2, 3, 0], [1, 2, 3], [4, 0, 0]]
    assert out["completion_mask"].sum().item() == out["num_items_in_batch"].item() == 7
    assert out["advantages"].tolist() == [-1.0, 1.0, 0.5, -0.5]
    with pytest.raises(ValueError, match="pixel_values"):
        regroup([{**a, "pixel_values": torch.zeros(1)}], [(0, 0)], g, 0)


def test_dynamic_sampling_refills_zero_variance_groups_in_a_real_run(tmp_path, tiny_model_dir):
    """The random tiny model earns reward 0 everywhere: every group is flat, so each step
    spends its extra rounds and still trains on a full batch of the right shape."""
    data = write_samples(tmp_path / "d.parquet", synthetic_samples(12, seed=2))
    params = SMOKE.model_copy(update={"dynamic_sampling": True, "dynamic_sampling_max_rounds": 2})
    live = tmp_path / "dvclive"
    res = train_grpo(
        data,
        tiny_model_dir,
        tmp_path / "m",
        params,
        date=DATE,
        scratch_root=tmp_path / "s",
        live_dir=live,
    )
    assert res.metrics["global_step"] == 2 and res.metrics["dynamic_sampling"] is True
    assert [r["dynamic_sampling_rounds"] for r in res.steps] == [2.0, 2.0]
    assert all(r["varied_group_share"] == 0.0 for r in res.steps)
    # the subclass's own log keys reach DVCLive's per-step files
    rounds = live / "plots" / "metrics" / "dynamic_sampling" / "rounds.tsv"
    assert rounds.read_text().splitlines() == ["step\trounds", "1\t2.0", "2\t2.0"]
    assert (live / "plots" / "metrics" / "dynamic_sampling" / "discarded_groups.tsv").is_file()
    assert res.metrics["dynamic_sampling_rounds_mean"] == 2.0
    assert (tmp_path / "m" / "model.safetensors").exists()
    # the reward counts describe what was trained on: 2 steps x 2 prompts x 2 rollouts;
    # the two refill rounds' rollouts per step were thrown away and are counted apart
    assert sum(res.metrics["reward_reasons"].values()) == 2 * 2 * 2
    assert res.metrics["discarded_completions"] == 2 * 2 * 2 * 2
    assert [r["discarded_groups"] for r in res.steps] == [4.0, 4.0]


class FakeGRPO:
    """What DAPO dynamic sampling touches of TRL 1.16's GRPOTrainer: rewards per round
    from ``_calculate_rewards`` (the reward function called as TRL calls it), per-batch
    reward log values appended to ``_metrics`` as TRL does, a scored batch out. Each
    round's completions come from ``plan``."""

    def __init__(self, reward: ToolMatchReward, plan: list[list[str]], label: str):
        from collections import defaultdict
        from types import SimpleNamespace

        self.reward_funcs, self.reward_func_names = [reward], ["toolmatch"]
        self.reward_weights = torch.ones(1)
        self.num_generations = 2
        self.model = SimpleNamespace(training=True)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._tokenizer = SimpleNamespace(pad_token_id=0)
        self.train_dataset = [{"prompt": "p", "label": label}] * 3
        self.plan = list(plan)
        self.logged: dict[str, list[float]] = {}

    def _calculate_rewards(self, inputs, completions):
        log = lambda k, v: self.logged.setdefault(k, []).append(v)  # noqa: E731
        out = self.reward_funcs[0](completions, [i["label"] for i in inputs], log_metric=log)
        return torch.tensor(out, dtype=torch.float32).unsqueeze(1)

    def _generate_and_score_completions(self, inputs):
        from trl.trainer.utils import nanstd

        completions = self.plan.pop(0)
        rewards = self._calculate_rewards(inputs, completions).sum(dim=1)
        groups = rewards.view(-1, 2)
        std = nanstd(groups, dim=1).repeat_interleave(2)
        m = self._metrics["train"]
        m["reward"].append(rewards.mean().item())
        m["reward_std"].append(nanstd(rewards).item())
        m["frac_reward_zero_std"].append(
            torch.isclose(std, torch.zeros_like(std)).float().mean().item()
        )
        m["completions/mean_length"].append(sum(map(len, completions)) / len(completions))
        for k, v in self.logged.items():
            m[k].append(sum(v) / len(v))
        self.logged.clear()
        n = len(completions)
        return {
            "prompt_ids": torch.ones(n, 2, dtype=torch.long),
            "prompt_mask": torch.ones(n, 2, dtype=torch.long),
            "completion_ids": torch.tensor([[len(c), 1] for c in completions]),
            "completion_mask": torch.ones(n, 2, dtype=torch.long),
            "advantages": rewards - groups.mean(dim=1).repeat_interleave(2),
            "num_items_in_batch": torch.tensor(2 * n),
        }


def test_dynamic_sampling_logs_the_trained_batch_and_counts_the_discarded_apart():
    right, wrong = render_calls([CALL]), "no idea"
    reward = ToolMatchReward()
    plan = [
        [right, wrong, wrong, wrong],  # group 0 varied (kept), group 1 flat
        [wrong, wrong, wrong, right],  # refill: group 0 flat (discarded), group 1 varied
    ]
    cls = dynamic_sampling_class(FakeGRPO)
    label = lj(Label(calls=[CALL]))
    trainer = cls(reward, plan, label, max_rounds=3, seed=0)
    out = trainer._generate_and_score_completions([{"prompt": "p", "label": label}] * 4)
    assert out["completion_ids"][:, 0].tolist() == [len(right), len(wrong), len(wrong), len(right)]
    m = trainer._metrics["train"]
    # trained on [right, wrong] + [wrong, right]: mean 0.5, both groups varied; the two
    # generated batches each had mean 0.25 and one flat group of two
    assert m["reward"] == [0.5] and m["frac_reward_zero_std"] == [0.0]
    assert m["reward_std"] == [pytest.approx(torch.tensor([1.0, 0, 0, 1]).std().item())]
    assert m["rewards/toolmatch/mean"] == [0.5]
    assert m["toolmatch/match_rate"] == [0.5] and m["toolmatch/reward_call"] == [0.5]
    assert m["completions/mean_length"] == [pytest.approx((len(right) + 3 * len(wrong)) / 4)]
    assert m["dynamic_sampling/rounds"] == [1.0] and m["dynamic_sampling/discarded_groups"] == [2.0]
    assert reward.stats.n == 4 and reward.stats.matched == 2
    assert reward.discarded.n == 4 and reward.discarded.matched == 0
    assert reward.pending == []


def test_guard_verdict():
    guard = GuardParams(min_ratio=0.8, action="fail")
    assert guard_verdict({"tool_call_rate": 0.7}, {"tool_call_rate": 0.9}, guard)["ok"] is False
    ok = guard_verdict({"tool_call_rate": 0.75}, {"tool_call_rate": 0.9}, guard)
    assert ok["ok"] and ok["ratio"] == pytest.approx(0.75 / 0.9)
    skipped = guard_verdict({"tool_call_rate": 0.1}, None, guard)
    assert skipped["ok"] and skipped["skipped"] == "no warm-start held-out check"


def test_collapse_warning_names_what_the_lost_calls_became():
    guard = GuardParams(min_ratio=0.8, action="warn")
    base = {"tool_call_rate": 0.9}
    texty = guard_verdict(
        {"tool_call_rate": 0.4, "text_answer_rate": 0.5, "unparsed_rate": 0.1}, base, guard
    )
    assert not texty["ok"] and texty["text_answer_rate"] == 0.5
    assert collapse_kind(texty).startswith("the policy is turning into a text answerer")
    # measured in the no_edde try (README): calls repeated up to the token cap
    broken = guard_verdict(
        {"tool_call_rate": 0.43, "text_answer_rate": 0.0, "unparsed_rate": 0.57}, base, guard
    )
    assert "does not parse" in collapse_kind(broken) and "0.57" in collapse_kind(broken)
    # a check from before the split was recorded
    old = guard_verdict({"tool_call_rate": 0.4}, base, guard)
    assert collapse_kind(old) == "the policy is losing its tool calls"


@pytest.mark.parametrize("algorithm", ["sft", "grpo"])
def test_equal_steps_and_sequences_for_d_j_of_different_no_call_shares(
    tmp_path, tiny_model_dir, algorithm
):
    """Two D_j, one mostly call rows and one with many no-call rows, under the same
    max_samples / max_steps / no-call cap: both runs train the same rows count, steps and
    sequences, with SFT and with GRPO."""
    from looptool.loop.warmstart import train_sft
    from looptool.params.train import SFTParams

    pool = synthetic_samples(120, seed=4)
    calls = [s for s in pool if not s.label.is_no_call]
    no_call = [s for s in pool if s.label.is_no_call]
    assert len(no_call) >= 6
    d_a = write_samples(tmp_path / "a.parquet", calls[:20])
    d_b = write_samples(tmp_path / "b.parquet", calls[:14] + no_call[:6])
    out = {}
    for name, path in (("a", d_a), ("b", d_b)):
        if algorithm == "sft":
            sft = SFTParams(max_steps=2, batch_size=4, micro_batch_size=4, max_samples=8,
                            max_length=512, device="cpu", cpu_threads=1, save_steps=1)  # fmt: skip
            res = train_sft(path, tiny_model_dir, tmp_path / f"m{name}", sft, date=DATE,
                            scratch_root=tmp_path / "s", kind="train", name=name,
                            max_no_call_share=0.2)  # fmt: skip
            steps = res.metrics["sequences_trained"] // 4
        else:
            params = SMOKE.model_copy(update={"max_samples": 8, "max_no_call_share": 0.2})
            res = train_grpo(path, tiny_model_dir, tmp_path / f"m{name}", params, date=DATE,
                             scratch_root=tmp_path / "s", name=name)  # fmt: skip
            steps = res.metrics["global_step"]
        out[name] = (res.metrics["samples_trained"], steps, res.metrics["sequences_trained"])
    assert out["a"] == out["b"] and out["a"][0] == 8 and out["a"][1] == 2
