"""The compared arms as DVC experiments: their `dvc` commands and their results.

Each arm is `dvc exp run --temp --name <prefix>-<arm>` with its `-S` overrides, run one
after another in temporary copies of the repository, so the workspace (params.yaml,
data/) is left as it is. Stages whose command, dependencies and params are the same in
every arm (seed stages, warm start, eval_warmstart, init_dataset, and iteration 1's
train/probe) run once: later arms restore them from DVC's run-cache, which lives in the
shared .dvc/cache. Results are read back from the experiment commits (DVC commits the
uncached eval.json metrics there) without `dvc exp apply`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import yaml

from looptool.params.loop import Ablation

# Table 4's ablations, in the paper's order (every loop.ablation value but "none")
ABLATIONS: tuple[str, ...] = tuple(a for a in get_args(Ablation) if a != "none")


class ExperimentError(RuntimeError):
    """An experiment that is missing or lacks a result file; the message names both."""


@dataclass(frozen=True)
class Arm:
    """One compared configuration: a name and the `-S` overrides that make it."""

    name: str
    overrides: tuple[str, ...] = ()

    def exp_name(self, prefix: str) -> str:
        return f"{prefix}-{self.name}"


# The baselines, by name. static: the paper's "w/o iterations" (|D_j| per iteration from
# the run's finite seed pool, cycling); static_fresh: fresh seed samples every iteration
# from the whole D_seed training split (a data-scale upper bound, not the paper's arm).
BASELINES: dict[str, tuple[str, ...]] = {
    "static": ("eval.static_baseline=true",),
    "static_fresh": ("eval.static_baseline=true", "eval.static_source=fresh"),
}


def all_arms() -> dict[str, Arm]:
    """Every arm `looptool compare` knows: loop, the baselines, the Table 4 ablations."""
    out = {"loop": Arm("loop")}
    out.update({name: Arm(name, sets) for name, sets in BASELINES.items()})
    out.update({a: Arm(a, (f"loop.ablation={a}",)) for a in ABLATIONS})
    return out


def arms(ablations: bool, names: list[str] | None = None) -> list[Arm]:
    """The arms to run: ``names`` (in that order; unknown names raise ValueError), else the
    loop and both static baselines, then, with ``ablations``, one arm per Table 4
    ablation."""
    known = all_arms()
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return [known[n] for n in dict.fromkeys(names)]
    out = [known["loop"], *(known[n] for n in BASELINES)]
    if ablations:
        out += [known[a] for a in ABLATIONS]
    return out


def exp_run_args(arm: Arm, prefix: str, profile: list[str]) -> list[str]:
    """`dvc exp run` arguments (after `dvc`) for ``arm``; ``profile``: overrides first."""
    sets = [x for o in (*profile, *arm.overrides) for x in ("-S", o)]
    return ["exp", "run", "--temp", "--name", arm.exp_name(prefix), *sets]


def experiment_refs(root: Path, names: list[str]) -> dict[str, str | None]:
    """name -> Git ref of the experiment of that name on the current commit (None: absent).

    Only the current commit counts: an experiment of the same name on an older commit
    was run from other code or data.
    """
    from dvc.repo.experiments.refs import ExpRefInfo
    from scmrepo.git import Git

    scm = Git(str(root))
    try:
        baseline = scm.get_rev()
        refs = {name: str(ExpRefInfo(baseline, name)) for name in names}
        return {name: ref if scm.get_ref(ref) else None for name, ref in refs.items()}
    finally:
        scm.close()


@dataclass(frozen=True)
class ArmResult:
    """An experiment's eval.json per iteration (0 = warm start) and its trainer."""

    evals: dict[int, dict]
    trainer: str


def read_arm(root: Path, name: str, ref: str) -> ArmResult:
    """Read params.yaml and every data/iter_j/eval.json (j = 0..J) from experiment ``ref``."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(root), rev=ref)
    try:
        try:
            params = yaml.safe_load(fs.read_text("params.yaml")) or {}
            iterations = params["iterations"]
            js = sorted(int(item["j"]) for item in iterations.values())
        except (FileNotFoundError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise ExperimentError(
                f"experiment {name}: params.yaml has no valid iterations ({exc})"
            ) from None
        evals: dict[int, dict] = {}
        for j in (0, *js):
            path = f"data/iter_{j}/eval.json"
            try:
                evals[j] = json.loads(fs.read_text(path))
            except FileNotFoundError:
                raise ExperimentError(
                    f"experiment {name}: {path} not found (did eval@{j} run?)"
                ) from None
            except json.JSONDecodeError as exc:
                raise ExperimentError(f"experiment {name}: {path}: invalid JSON ({exc})") from None
        trainer = str((params.get("train") or {}).get("algorithm", "grpo"))
        return ArmResult(evals, trainer)
    finally:
        fs.close()
