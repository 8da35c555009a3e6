"""`eval` and `iterations` sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The default of eval.max_engine_failure_share (also `looptool eval bfcl-run`'s).
MAX_ENGINE_FAILURE_SHARE = 0.05


class EvalParams(BaseModel):
    """eval@j: the iteration's policy on the held-out split (strict ToolMatch) and on
    BFCL: single-turn categories (BFCL-mode ToolMatch) and the executable multi-turn ones
    (official environments and checker, from the installed bfcl-eval)."""

    model_config = ConfigDict(extra="forbid")

    # The paper's "w/o iterations" baseline: when true, compose@j builds every D_{j+1}
    # from the seed pool only (split SEED, |D| = loop.dataset_size, unused seed samples
    # first), ignoring probe/verdicts/expansions, so the same pipeline trains on D_seed
    # every iteration. `looptool compare` runs it as a DVC experiment next to the loop
    # (`dvc exp run -S eval.static_baseline=true`). eval.json of eval@j (j >= 1) records
    # the flag; eval_warmstart does not depend on it, so both arms share the warm start.
    static_baseline: bool = False
    # Where the static baseline's D_{j+1} comes from. pool: the paper's "w/o iterations":
    # |D| samples per iteration from the run's finite seed pool (loop.compose.seed_pool),
    # cycling through it in one seeded order, fresh before repeated (D_1 is the order's
    # head, as in the loop). fresh: samples no iteration has used yet from the whole D_seed
    # training split (ignores the pool): more unique data than the loop sees, a data-scale
    # upper bound (`looptool compare` arm static_fresh).
    static_source: Literal["pool", "fresh"] = "pool"
    max_tokens: int = Field(256, ge=1)  # generation budget per answer
    thinking: bool = False  # enable_thinking for the chat template (as in probing)
    heldout_limit: int | None = Field(None, ge=1)  # first N held-out samples; null = all
    bfcl: bool = True  # false skips BFCL (held-out only)
    bfcl_dir: str = "data/bfcl"
    # null = every single-turn category present in bfcl_dir and the four multi-turn ones
    bfcl_categories: list[str] | None = None
    # Entries per category (seeded sample, the same set every iteration); null = all.
    bfcl_per_category: int | None = Field(20, ge=1)
    # Entries per multi-turn category (each is a whole conversation); null = all; 0 = none
    # (a CPU budget: SmolLM2 took ~11 min per conversation, measured).
    bfcl_multi_turn_per_category: int | None = Field(5, ge=0)
    bfcl_seed: int = 0
    # BFCL names may contain '.', which some function-calling APIs reject ('.' -> '_').
    bfcl_dot_to_underscore: bool = False
    # Share of the policy's requests that may fail (EngineError or Failed: server down,
    # HTTP 401, prompt too long) in each part of an evaluation of the policy (held-out,
    # BFCL single-turn, BFCL multi-turn conversations, the warm start's / collapse guard's
    # held-out check); above it the stage fails naming the engine and the first error.
    max_engine_failure_share: float = Field(MAX_ENGINE_FAILURE_SHARE, ge=0.0, le=1.0)


class IterationItem(BaseModel):
    """One loop iteration. DVC's foreach passes the whole item on each stage's command
    line, so editing one item (e.g. its ``overrides``) reruns only that iteration and
    the ones after it."""

    model_config = ConfigDict(extra="forbid")

    j: int
    prev: int
    next: int
    # Dotted params paths applied on top of params.yaml for this iteration only,
    # e.g. {"train.learning_rate": 2e-6, "loop.compose.seed_new": 2816}.
    overrides: dict[str, Any] = {}

    @model_validator(mode="after")
    def _chain(self) -> IterationItem:
        if self.prev != self.j - 1 or self.next != self.j + 1:
            raise ValueError(f"iteration j={self.j} needs prev={self.j - 1} and next={self.j + 1}")
        return self
