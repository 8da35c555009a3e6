"""`eval` and `iterations` sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bfcl_dir: str = "data/bfcl"
    static_baseline: bool = False


class IterationItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    j: int
    prev: int
