"""`warmstart` and `train` sections: SFT warm start and GRPO."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WarmstartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 1e-6
