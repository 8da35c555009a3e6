"""`loop` section: probe (GCP), judge (JGLV), expand (EDDE), compose (Eq. 5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class LoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_size: int = 1000
    ablation: Literal["none", "no_hppl", "no_jglv", "no_edde", "hppl_replace", "es_repeat"] = "none"
