"""GPU placement per role (`gpus:` -> CUDA_VISIBLE_DEVICES per stage) and one engine at
a time: majority-vote judges open one after another, each closed before the next."""

from __future__ import annotations

import pytest
import test_judge as judge_t
import yaml

from looptool.engines.base import EngineError
from looptool.engines.placement import apply_gpus, stage_gpus, stage_specs
from looptool.params import Params
from looptool.params.engines import EngineSpec

LOCAL = {"backend": "hf", "model": "m"}


def params(**judge_extra) -> Params:
    raw = yaml.safe_load(open("params.yaml"))
    raw["engines"]["policy"] = {**LOCAL, "gpus": "0"}
    raw["engines"]["judge"] = {**LOCAL, "gpus": "4,5,6,7"}
    raw["engines"]["generator"] = {"backend": "openai", "model": "g", "base_url": "http://x/v1"}
    raw["loop"]["expand"]["llm_verify"] = "judge"
    raw["loop"]["judge"].update(judge_extra)
    raw["seed"]["verify"]["llm_tier"] = "judge"
    return Params.model_validate(raw)


@pytest.mark.parametrize(
    "stage,expected",
    [
        ("probe", "0"),
        ("eval", "0"),
        ("judge", "4,5,6,7"),
        ("expand", "4,5,6,7"),  # the generator is an HTTP endpoint: only the verifier is local
        ("seed_apis", None),
        ("seed_verify", "4,5,6,7"),
    ],
)
def test_each_stage_sees_its_roles_gpus(stage, expected):
    env: dict[str, str] = {}
    assert apply_gpus(stage_specs(params(), stage), stage, env) == expected
    assert env.get("CUDA_VISIBLE_DEVICES") == expected


def test_majority_vote_judges_see_the_union_and_placement_refuses_a_started_cuda(monkeypatch):
    models = [{**LOCAL, "gpus": "4,5"}, {**LOCAL, "gpus": "6,7"}, {**LOCAL, "gpus": "4,5"}]
    specs = stage_specs(params(models=models), "judge")
    assert stage_gpus(specs) == "4,5,6,7"
    assert stage_gpus([EngineSpec(backend="template")]) is None
    import looptool.engines.placement as placement

    monkeypatch.setattr(placement, "cuda_started", lambda: True)
    env = {"CUDA_VISIBLE_DEVICES": "0"}
    with pytest.raises(EngineError, match="judge@2: engines ask for GPUs 4,5,6,7 but CUDA"):
        apply_gpus(specs, "judge@2", env)
    assert apply_gpus(specs, "judge@2", {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}) == "4,5,6,7"
    with pytest.raises(ValueError, match="gpus"):
        EngineSpec(backend="hf", model="m", gpus="0;1")


class Closable(judge_t.FakeJudge):
    """A judge that records how many judges are open while it works."""

    open_now: list[str] = []
    peak = 0

    def __init__(self, name: str):
        super().__init__("truthful", model_id=name)
        Closable.open_now.append(name)
        Closable.peak = max(Closable.peak, len(Closable.open_now))
        self.closed = False

    def close(self):
        Closable.open_now.remove(self.model_id)
        self.closed = True


def test_judges_run_one_after_another_each_closed_before_the_next():
    Closable.open_now, Closable.peak = [], 0
    made: list[Closable] = []

    def opener(name):
        def open_():
            made.append(Closable(name))
            return made[-1]

        return open_

    cases = [(judge_t.sample(i, city="Paris"), judge_t.call(city="Lyon"), 2.0) for i in range(3)]
    ds, probe = judge_t.tables(cases)
    res = judge_t.run_judge(
        [opener("a"), opener("b"), opener("c")],
        ds,
        probe,
        iteration=1,
        date="2026-11-22",
        params=judge_t.LoopParams(),
    )
    assert [m.model_id for m in made] == ["a", "b", "c"] and all(m.closed for m in made)
    assert Closable.peak == 1 and Closable.open_now == []
    assert set(res.table.column("verdict").to_pylist()) == {"PRED_WRONG"}
    assert [c["model"] for c in res.metrics["cache"]] == ["a", "b", "c"]
