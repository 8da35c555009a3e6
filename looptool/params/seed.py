"""`seed` section: trees -> APIs -> dialogues -> samples (D_seed)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SeedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_apis: int = 400
    n_dialogues: int = 400
    heldout_fraction: float = 0.1
    label_noise: float = 0.0
