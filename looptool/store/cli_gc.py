"""`looptool gc --keep-last N` (looptool/store/gc.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from looptool.store.cli import ROOT_OPTION


@click.command("gc", short_help="Drop older iterations' checkpoints (workspace + DVC cache).")
@click.option("--keep-last", required=True, type=int, metavar="N",
              help="Keep the checkpoints of the newest N iterations (N >= 1).")  # fmt: skip
@click.option("--pattern", default="data/iter_*/model", show_default=True,
              help="Which DVC outputs are checkpoints (the iteration from iter_<j>).")  # fmt: skip
@ROOT_OPTION
@click.option("--dry-run", is_flag=True, help="Say what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(keep_last: int, pattern: str, root: Path, dry_run: bool, as_json: bool) -> None:
    """Drop the checkpoints of all but the newest N iterations from the workspace and the
    local DVC cache (objects a kept output shares stay). dvc.lock, the tables and the
    lineage keep every iteration's hash: `dvc repro --allow-missing` goes on without the
    dropped ones, `dvc repro` rebuilds them, `dvc pull` restores a copy pushed before.
    Refused while a DVC command runs in the repository.

    Example: looptool gc --keep-last 1 --dry-run
    """
    from looptool.store.gc import GcError, format_plan, plan_gc, run_gc

    try:
        plan = plan_gc(root, keep_last, pattern)
        if not dry_run:
            plan = run_gc(plan)
    except GcError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(plan.to_json(), indent=2) if as_json else format_plan(plan))
