"""params.yaml, validated: one pydantic model per top-level section, one file each."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from looptool.params.engines import EnginesParams
from looptool.params.evaluation import EvalParams, IterationItem
from looptool.params.loop import LoopParams
from looptool.params.project import ProjectParams
from looptool.params.seed import SeedParams
from looptool.params.train import TrainParams, WarmstartParams


class ParamsError(ValueError):
    """params.yaml is missing or invalid; the message names the file and the key."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: ProjectParams = ProjectParams()
    engines: EnginesParams
    seed: SeedParams = SeedParams()
    warmstart: WarmstartParams = WarmstartParams()
    train: TrainParams = TrainParams()
    loop: LoopParams = LoopParams()
    eval: EvalParams = EvalParams()
    iterations: list[IterationItem]

    def iteration(self, j: int) -> IterationItem:
        for item in self.iterations:
            if item.j == j:
                return item
        raise ParamsError(f"params: no iteration j={j} in `iterations`")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate params.yaml; errors name the file and the offending key."""
    p = Path(path)
    if not p.exists():
        raise ParamsError(f"{p}: file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{p}: invalid YAML: {exc}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ParamsError(f"{p}: invalid params\n" + "\n".join(lines)) from None
