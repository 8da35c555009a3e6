"""`looptool` command line. Subcommands live next to the code they drive and are
imported only when invoked, so `looptool --help` stays fast (no torch import)."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "eval": "looptool.eval.bfcl.cli:eval_group",
    # engines (looptool/engines/cli.py, cli_import.py)
    "cache": "looptool.engines.cli:cache_group",
    "import-model": "looptool.engines.cli_import:import_model_cmd",
    "engines": "looptool.engines.cli:engines_group",
    # the tiny model (looptool/loop/cli_tiny_model.py)
    "build-tiny-model": "looptool.loop.cli_tiny_model:build_tiny_model_cmd",
    # version tools (looptool/store/cli.py)
    "status": "looptool.store.cli:status",
    "diff": "looptool.store.cli:diff",
    "sql": "looptool.store.cli:sql",
    "lineage": "looptool.store.cli:lineage",
    "export": "looptool.store.cli:export",
    "gc": "looptool.store.cli_gc:gc",
    # loop vs static (and ablations) as DVC experiments (looptool/compare/cli.py)
    "compare": "looptool.compare.cli:compare",
    # the run's HTML report (looptool/report/cli.py)
    "report": "looptool.report.cli:report",
    # seed data: import dry run (looptool/seed/cli.py)
    "seed": "looptool.seed.cli:seed_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="looptool")
def main() -> None:
    """LoopTool: the closed data-training loop for tool-calling LLMs, as a DVC pipeline."""


if __name__ == "__main__":
    main()
