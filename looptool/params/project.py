"""`project` section: global knobs shared by every stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProjectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    # The date written into system prompts; fixed so prompts (and caches) are reproducible.
    date: str = "2026-11-22"
    cache_dir: str = ".cache/looptool"
    # The licence exported datasets declare (`looptool export --format hf`: the card's YAML),
    # a Hub licence id such as apache-2.0, cc-by-4.0 or other.
    license: str = "apache-2.0"
