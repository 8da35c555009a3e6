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
from dataclasses import dataclass, field
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
    """An experiment's results per iteration (0 = warm start): eval.json, the trainer,
    train_metrics.json (j >= 1), the held-out items' outcomes (item id -> ok) and what
    D_1..D_j drew from the seed pool (cumulative)."""

    evals: dict[int, dict]
    trainer: str
    train: dict[int, dict] = field(default_factory=dict)
    items: dict[int, dict[str, bool]] = field(default_factory=dict)
    pool: dict[int, dict] = field(default_factory=dict)


def _read_parquet(fs, path: str):
    """A DVC-tracked parquet of the experiment (None when the cache lacks it)."""
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as fh:
            return pq.read_table(fh)
    except (FileNotFoundError, OSError):
        return None


def _heldout_items(fs, j: int) -> dict[str, bool]:
    table = _read_parquet(fs, f"data/iter_{j}/eval_items.parquet")
    if table is None:
        return {}
    rows = table.select(["suite", "item_id", "ok", "reason"]).to_pylist()
    # engine failures are not scored (eval.heldout's NOT_SCORED): leave them unpaired
    return {
        r["item_id"]: bool(r["ok"])
        for r in rows
        if r["suite"] == "heldout" and r["reason"] != "engine_error"
    }


def pool_use(pool_ids: list[str], datasets: dict[int, list[str]]) -> dict[int, dict]:
    """Per iteration j: how D_1..D_j drew on the seed pool: its size, the pool samples
    trained on at least once, and how often each was seen (rows of D_1..D_j, repeats and
    relabeled error seeds included; EDDE children are new samples and not counted)."""
    pool = set(pool_ids)
    seen: dict[str, int] = {}
    out: dict[int, dict] = {}
    for j in sorted(datasets):
        for sid in datasets[j]:
            if sid in pool:
                seen[sid] = seen.get(sid, 0) + 1
        out[j] = {
            "pool_size": len(pool),
            "pool_unique_seen": len(seen),
            "pool_seen_mean": sum(seen.values()) / len(seen) if seen else None,
            "pool_seen_max": max(seen.values()) if seen else None,
        }
    return out


def read_arm(root: Path, name: str, ref: str) -> ArmResult:
    """Read params.yaml and every data/iter_j/eval.json (j = 0..J) from experiment ``ref``,
    with the train metrics, held-out item outcomes and D_j sample ids where present."""
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
        train: dict[int, dict] = {}
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
            if j:
                try:
                    train[j] = json.loads(fs.read_text(f"data/iter_{j}/train_metrics.json"))
                except (FileNotFoundError, json.JSONDecodeError):
                    pass  # an older or toy pipeline: the budget columns stay empty
        trainer = str((params.get("train") or {}).get("algorithm", "grpo"))
        items = {j: _heldout_items(fs, j) for j in (0, *js)}
        pool_table = _read_parquet(fs, "data/iter_1/seed_pool.parquet")
        pool: dict[int, dict] = {}
        if pool_table is not None:
            datasets = {}
            for j in js:
                ds = _read_parquet(fs, f"data/iter_{j}/dataset.parquet")
                if ds is None:
                    break
                datasets[j] = ds.column("sample_id").to_pylist()
            pool = pool_use(pool_table.column("sample_id").to_pylist(), datasets)
        return ArmResult(evals, trainer, train, items, pool)
    finally:
        fs.close()
