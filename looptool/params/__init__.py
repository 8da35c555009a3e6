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
    # keyed by the iteration number as a string, so DVC names stages probe@1, probe@2, ...
    iterations: dict[str, IterationItem]

    def iteration(self, j: int) -> IterationItem:
        item = self.iterations.get(str(j))
        if item is not None:
            return item
        raise ParamsError(f"params: no iteration j={j} in `iterations`")

    def for_iteration(self, j: int) -> Params:
        """These params with iteration ``j``'s ``overrides`` applied (validated again)."""
        overrides = self.iteration(j).overrides
        if not overrides:
            return self
        raw = self.model_dump()
        for dotted, value in overrides.items():
            node = raw
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node, dict) or key not in node:
                    raise ParamsError(f"iterations[j={j}].overrides: unknown key {dotted!r}")
                node = node[key]
            if not isinstance(node, dict) or leaf not in node:
                raise ParamsError(f"iterations[j={j}].overrides: unknown key {dotted!r}")
            node[leaf] = value
        try:
            return Params.model_validate(raw)
        except ValidationError as exc:
            raise ParamsError(f"iterations[j={j}].overrides: {_format(exc)}") from None


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
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{p}: invalid params\n{_format(exc)}") from None
    for key, item in params.iterations.items():
        if key != str(item.j):
            raise ParamsError(f"{p}: iterations[{key!r}] has j={item.j}; the key must equal j")
    js = sorted(item.j for item in params.iterations.values())
    if js != list(range(1, len(js) + 1)):
        raise ParamsError(f"{p}: iterations must be j = 1..J without gaps, got {js}")
    return params


def _format(exc: ValidationError) -> str:
    def msg(e: dict) -> str:  # pydantic's "Extra inputs are not permitted" is a typo'd key
        return "unknown key (a typo?)" if e["type"] == "extra_forbidden" else e["msg"]

    return "\n".join(f"  {'.'.join(str(x) for x in e['loc'])}: {msg(e)}" for e in exc.errors())
