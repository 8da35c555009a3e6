"""`looptool compare`: run the arms as DVC experiments and tabulate their evaluation."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from looptool.store.cli import ROOT_OPTION
from looptool.store.output_guard import OutputDir

if TYPE_CHECKING:
    from looptool.compare.experiments import Arm
    from looptool.params import Params


def _dvc(args: list[str], root: Path, env: dict[str, str]) -> None:
    """Run `dvc ARGS` in ``root``, output streamed; a failure is a one-line error."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env)
    if proc.returncode != 0:
        raise click.ClickException(f"`dvc {shlex.join(args)}` exited {proc.returncode}")


def _profile_overrides(root: Path, params_file: Path | None) -> tuple[list[str], Params]:
    """(`-S` overrides turning params.yaml into ``params_file``, the params every arm gets)."""
    from dvc.utils.serialize import load_yaml

    from looptool.compare.overrides import OverrideError, check_overrides, profile_overrides
    from looptool.params import ParamsError, load_params

    base_file = root / "params.yaml"
    try:
        params = load_params(params_file or base_file)
    except ParamsError as exc:
        raise click.ClickException(str(exc).replace("\n", " ")) from None
    if params_file is None:
        return [], params
    try:
        base, profile = load_yaml(base_file), load_yaml(params_file)
        overrides = profile_overrides(base, profile)
        check_overrides(base_file, profile, overrides)
    except OverrideError as exc:
        raise click.ClickException(f"{params_file}: {exc}") from None
    return overrides, params


@click.command("compare", short_help="Loop vs static baseline (and ablations) as DVC experiments.")
@ROOT_OPTION
@click.option("--ablations", is_flag=True, help="Also run the five Table 4 ablations.")
@click.option("--arms", "arm_names", default=None, metavar="A,B,...",
              help="Run exactly these arms, e.g. loop,static,static_fresh,no_edde "
                   "(loop, static, static_fresh, no_hppl, no_jglv, no_edde, hppl_replace, "
                   "es_repeat).")  # fmt: skip
@click.option("--params", "params_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A params profile (e.g. params.smol.yaml) for every arm, passed as -S overrides.")  # fmt: skip
@click.option("--out", type=OutputDir(under_root=True), default="compare",
              show_default=True, help="Directory for compare.csv, compare.png, dvc_plots/.")  # fmt: skip
@click.option("--prefix", default="compare", show_default=True,
              help="Experiment names are PREFIX-<arm> (loop, static, no_hppl, ...).")  # fmt: skip
@click.option("--replace", is_flag=True,
              help="Remove this commit's experiments of the same names first and rerun them "
                   "(stages already run come back from DVC's run-cache). Without it, arms "
                   "whose experiment exists are kept and only the others run.")  # fmt: skip
@click.option("--collect-only", is_flag=True, help="Run nothing: tabulate existing experiments.")
@click.option("--dry-run", is_flag=True, help="Print the dvc commands and exit.")
def compare(
    root: Path, ablations: bool, arm_names: str | None, params_file: Path | None, out: Path,
    prefix: str, replace: bool, collect_only: bool, dry_run: bool,
) -> None:  # fmt: skip
    """Run the loop and the static baseline (eval.static_baseline=true), and with
    --ablations the five loop.ablation variants, as DVC experiments from the same seed
    data and warm start; then print per arm and iteration the held-out exact match with
    its 95% Wilson interval, the tool-call rate and the BFCL subset accuracy, and write
    OUT/compare.csv, OUT/compare.png and OUT/dvc_plots/ (`dvc plots diff`).

    Experiments run one after another in temporary copies of the repository (`dvc exp
    run --temp`): the workspace is not changed. Uncommitted changes to tracked files are
    included, untracked files are not. A killed compare resumes: run it again and the arms
    whose experiment exists are kept, the others run, their finished stages restored from
    DVC's run-cache.
    """
    from scmrepo.exceptions import SCMError

    from looptool.compare.experiments import ExperimentError, arms, exp_run_args, experiment_refs
    from looptool.engines.cache_store import default_cache_dir

    root = root.resolve()
    if not (root / "dvc.yaml").is_file() or not (root / ".dvc").is_dir():
        raise click.ClickException(f"{root}: not a DVC project (no dvc.yaml or .dvc/)")
    from looptool.store.dvc_lock import dvc_config_problem

    if (problem := dvc_config_problem(root)) is not None:  # every `dvc exp` would fail on it
        raise click.ClickException(problem)
    out = out if out.is_absolute() else root / out
    overrides, params = _profile_overrides(root, params_file)
    try:
        chosen = arms(ablations, [a.strip() for a in arm_names.split(",")] if arm_names else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    names = [a.exp_name(prefix) for a in chosen]
    runs = [exp_run_args(a, prefix, overrides) for a in chosen]
    if dry_run:
        for args in runs:
            click.echo(shlex.join(["dvc", *args]))
        click.echo(shlex.join(["dvc", *_plots_args(names, len(params.iterations), out)]))
        return
    env = {
        **os.environ,
        # stage commands call `python`: this interpreter's environment first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # one request/training cache for every arm (a temp copy would get its own, then lose it)
        "LOOPTOOL_CACHE_DIR": str(default_cache_dir(params.project.cache_dir, str(root))),
    }
    try:
        refs = experiment_refs(root, names)
    except SCMError as exc:  # not a Git repository / no commit yet
        raise click.ClickException(f"{root}: DVC experiments need a Git commit ({exc})") from None
    if not collect_only:
        existing = [ref for ref in refs.values() if ref]
        if existing and replace:
            _dvc(["exp", "remove", *existing], root, env)
            refs = dict.fromkeys(refs)
        for i, args in enumerate(runs):
            if refs[names[i]]:
                click.echo(f"{names[i]}: experiment exists on this commit, kept", err=True)
                continue
            click.echo(f"$ dvc {shlex.join(args)}", err=True)
            try:
                _dvc(args, root, env)
            except click.ClickException as exc:
                done = ", ".join(n for n in names[:i] if n) or "none"
                exc.message += (
                    f" (finished arms: {done}; run the same `looptool compare` again to go on: "
                    "finished arms are kept, finished stages come back from DVC's run-cache)"
                )
                raise
        refs = experiment_refs(root, names)
    missing = [n for n, r in refs.items() if r is None]
    if missing:
        raise click.ClickException(f"no experiment {', '.join(missing)} on this commit")
    try:
        _report(root, chosen, prefix, refs, out, env)
    except ExperimentError as exc:
        raise click.ClickException(str(exc)) from None


def _plots_args(names: list[str], last: int, out: Path) -> list[str]:
    """`dvc plots diff` of the experiments' chained eval curve (data/iter_J/eval_curve.csv)."""
    target = f"data/iter_{last}/eval_curve.csv"
    return ["plots", "diff", *names, "--targets", target, "-o", str(out / "dvc_plots")]


def _report(
    root: Path, chosen: list[Arm], prefix: str, refs: dict[str, str | None], out: Path,
    env: dict[str, str],
) -> None:  # fmt: skip
    """Read every arm's results, print the table, write CSV, PNG and the DVC plots."""
    from looptool.compare.experiments import read_arm
    from looptool.compare.plot import write_plot
    from looptool.compare.table import (
        EvalFormatError,
        build_table,
        format_table,
        warmstart_mismatch,
        write_csv,
    )  # fmt: skip

    results = {}
    for a in chosen:
        ref = refs[a.exp_name(prefix)]
        assert ref is not None  # checked by the caller
        results[a.name] = read_arm(root, a.exp_name(prefix), ref)
    try:
        table = build_table({arm: r.evals for arm, r in results.items()}, results)
    except EvalFormatError as exc:
        raise click.ClickException(str(exc)) from None
    exps = ", ".join(a.exp_name(prefix) for a in chosen)
    click.echo(f"experiments: {exps} (dvc exp show)")
    click.echo(format_table(table, {arm: r.trainer for arm, r in results.items()}))
    bad = warmstart_mismatch(table)
    if bad:
        click.echo(
            f"warning: iteration 0 (warm start) differs in {', '.join(bad)}: the arms did not "
            "share the warm start", err=True,
        )  # fmt: skip
    write_csv(table, out / "compare.csv")
    write_plot(table, out / "compare.png")
    last = min(max(r.evals) for r in results.values())
    _dvc(_plots_args([a.exp_name(prefix) for a in chosen], last, out), root, env)
    click.echo(f"wrote {out / 'compare.csv'}, {out / 'compare.png'}, {out / 'dvc_plots'}/")
