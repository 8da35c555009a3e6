"""`loop` section: probe (GCP), judge (JGLV), expand (EDDE), compose (Eq. 5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from looptool.params.engines import EngineSpec

Ablation = Literal["none", "no_hppl", "no_jglv", "no_edde", "hppl_replace", "es_repeat"]
LoopSplit = Literal["ES", "EE", "HPPL"]
HpplGroups = Literal["by_kind", "pooled", "calls_only"]

# The paper's EDDE scenario constraints (one is drawn per child).
DEFAULT_SCENARIOS = [
    "complexity",
    "user_persona",
    "interaction_style",
    "data_variation",
    "domain_shift",
]


class ProbeParams(BaseModel):
    """Greedy capability probing (GCP) with the iteration's policy."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=1)
    # Passed to the chat template as enable_thinking. A think block is never matched
    # against the label and never counted in the perplexity.
    thinking: bool = False
    # output: PPL of the policy's own greedy answer (Eq. 3); label: teacher-forced PPL of the label.
    ppl_source: Literal["output", "label"] = "output"
    # auto: the generation's own token log-probs when the answer has no think block,
    # else a teacher-forced score of the answer; score: always teacher-forced.
    ppl_method: Literal["auto", "score"] = "auto"
    # HPPL among mastered samples: the top `hppl_quantile` fraction, or the top `hppl_count`.
    hppl_mode: Literal["quantile", "count"] = "quantile"
    hppl_quantile: float = Field(0.25, gt=0.0, le=1.0)
    hppl_count: int = Field(100, ge=0)
    # Which mastered samples compete for HPPL: by_kind = PPL is ranked within each kind
    # group (call / clarify / irrelevant) and every group gets its proportional share of
    # the HPPL size (free-text PPL is not comparable with JSON-call PPL); pooled = one
    # ranking over all; calls_only = no-call samples never enter HPPL.
    hppl_groups: HpplGroups = "by_kind"


class JudgeParams(BaseModel):
    """Judge-guided label verification (JGLV) cascade: tier 0 equiv, tier 1 rules, tier 2 LLM."""

    model_config = ConfigDict(extra="forbid")

    equivalence: bool = True  # tier 0
    rules: bool = True  # tier 1
    # A schema-invalid label next to a schema-valid prediction: `accept` relabels at tier 1;
    # `confirm` asks the LLM whether the prediction is right (yes -> LABEL_WRONG, no -> BOTH_WRONG).
    rules_label_wrong: Literal["confirm", "accept"] = "confirm"
    # Position bias: fixed order, a seeded random order per sample, or both orders.
    order: Literal["fixed", "random", "both"] = "random"
    fixed_first: Literal["label", "prediction"] = "label"
    # When orders (or judges) disagree: keep_label = the candidate verdict that changes the
    # least (PRED_WRONG > BOTH_CORRECT > BOTH_WRONG > LABEL_WRONG); drop = BOTH_WRONG;
    # first = the first order's / first judge's verdict.
    tie_break: Literal["keep_label", "drop", "first"] = "keep_label"
    # Verdict extraction: constrained choice (backend `choose`) or a strict parser of free text.
    # auto = choice where the backend supports it.
    extraction: Literal["auto", "choose", "parse"] = "auto"
    max_tokens: int = Field(384, ge=8)  # parse mode: the whole judgement
    analysis_max_tokens: int = Field(96, ge=0)  # choose mode: analysis before the choice (0 = none)
    thinking: bool = False
    # Judge models for a majority vote (one EngineSpec each); empty = the single `engines.judge`.
    models: list[EngineSpec] = Field(default_factory=list)
    # What an UNPARSED verdict does: MR = treat as a model error with the label kept.
    unparsed_outcome: Literal["MR", "DROPPED"] = "MR"


class ExpandParams(BaseModel):
    """Error-driven data expansion (EDDE)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=0)  # children per error seed (paper: 4)
    scenarios: list[str] = Field(default_factory=lambda: list(DEFAULT_SCENARIOS), min_length=1)
    max_tokens: int = Field(1024, ge=16)
    temperature: float = Field(0.8, ge=0.0)
    # Tier-2 verification of children: off, or by the generator / judge role
    # (the template backend serves it with a grounding check).
    llm_verify: Literal["off", "generator", "judge"] = "generator"
    # Jaccard similarity (word 3-grams of context + label) at or above which a child is a
    # near-duplicate of its seed or of an accepted sibling.
    near_dup_threshold: float = Field(0.9, gt=0.0, le=1.0)
    # enable_thinking for the generation and verification prompts: off, so a reasoning
    # model (Qwen3) spends max_tokens on the JSON sample / the one-word verdict
    thinking: bool = False


class ComposeParams(BaseModel):
    """D_{j+1} = ES + EE + HPPL + Seed-new (Eq. 5) with a fixed total size."""

    model_config = ConfigDict(extra="forbid")

    # Explicit Seed-new count of the D_{j+1} this compose@j builds (use it in an iteration's
    # `overrides`); wins over the schedule and the decay.
    seed_new: int | None = Field(None, ge=0)
    # Explicit Seed-new counts for D_2, D_3, ... (the last entry repeats); overrides the decay.
    seed_new_schedule: list[int] | None = None
    # Paper Table 3: 18,304 -> 5,632 -> 2,816 -> 1,408 = 4/13, 2/13, 1/13 of |D|: halving.
    seed_new_start_fraction: float = Field(4 / 13, ge=0.0, le=1.0)
    seed_new_decay: float = Field(0.5, ge=0.0, le=1.0)
    # Overflow trimming when ES + EE + HPPL exceed the loop budget B = |D| - Seed-new:
    # proportional = every split keeps the same fraction of its candidates (the candidate
    # mix, e.g. EE ~ k x ES, is preserved; rounding remainders go by `priority`);
    # priority = every split first keeps up to `min_share` x B, the rest of B goes to the
    # splits in `priority` order.
    trim: Literal["proportional", "priority"] = "proportional"
    # The finite seed pool (paper: D_seed, 28k samples): the training seed samples this run
    # may ever use, fixed before iteration 1 by a seeded draw (data/iter_1/seed_pool.parquet;
    # the warm start's reserved samples and the held-out split are never in it). D_1, every
    # Seed-new and the static baseline draw only from it. auto = |D_1| + the Seed-new
    # schedule summed over D_2..D_J (the paper's 18,304 + 5,632 + 2,816 + 1,408 = 28,160: the
    # loop uses D_seed once); N = that many; all = the whole training split (unlimited at
    # template scale: a data-scale upper bound, not the paper's setting).
    seed_pool: Literal["auto", "all"] | int = "auto"
    priority: list[LoopSplit] = Field(default_factory=lambda: ["ES", "EE", "HPPL"])
    min_share: float = Field(0.1, ge=0.0, le=1 / 3)

    @model_validator(mode="after")
    def _priority(self) -> ComposeParams:
        if sorted(self.priority) != ["EE", "ES", "HPPL"]:
            raise ValueError("priority must list ES, EE and HPPL once each")
        if self.seed_new_schedule is not None and any(n < 0 for n in self.seed_new_schedule):
            raise ValueError("seed_new_schedule entries must be >= 0")
        if isinstance(self.seed_pool, int) and self.seed_pool < 1:
            raise ValueError("seed_pool must be auto, all or a count >= 1")
        return self


class LoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_size: int = Field(1000, ge=1)  # |D_j|, fixed every iteration
    ablation: Ablation = "none"
    probe: ProbeParams = ProbeParams()
    judge: JudgeParams = JudgeParams()
    expand: ExpandParams = ExpandParams()
    compose: ComposeParams = ComposeParams()
