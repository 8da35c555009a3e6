"""`eval` and `iterations` sections."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class EvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bfcl_dir: str = "data/bfcl"
    static_baseline: bool = False


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
