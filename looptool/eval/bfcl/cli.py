"""`looptool eval bfcl`: score BFCL predictions and print a per-category accuracy table;
`looptool eval bfcl-run`: run a model on BFCL and print the leaderboard columns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import polars as pl

from looptool.core.match_bfcl import BfclDataError
from looptool.eval.bfcl.data import DEFAULT_DATA_DIR
from looptool.eval.bfcl.report import evaluate_file
from looptool.params.evaluation import MAX_ENGINE_FAILURE_SHARE
from looptool.params.project import ProjectParams
from looptool.store.io import write_text_atomic
from looptool.store.output_guard import (
    FORCE_OPTION,
    OutputDir,
    OutputFile,
    OutputPathError,
    check_not_input,
)

RUN_FILES = ("predictions.jsonl", "verdicts.jsonl", "scores.json")


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate models and predictions."""


@eval_group.command("bfcl")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="BFCL data dir: BFCL_v4_<category>.json files and possible_answer/ beside them.",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help='JSON lines {"id": ..., "result": ...}; result is a decoded call list, '
    "<tool_call> text, or BFCL prompt-style text like [f(a=1)].",
)
@click.option(
    "--dot-to-underscore",
    is_flag=True,
    help="Expect '.' in function names written as '_' (function-calling models).",
)
@click.option(
    "--out",
    type=OutputFile(),
    default=None,
    help='Write one JSON line per prediction: {"id", "valid", "error_type"}.',
)
@FORCE_OPTION
def bfcl_cmd(
    data_dir: Path, predictions: Path, dot_to_underscore: bool, out: Path | None, force: bool
) -> None:
    """Score BFCL predictions with the BFCL-mode ToolMatch."""
    if out is not None:
        try:  # --force replaces an existing file, never the predictions being scored
            check_not_input(str(out), out, inputs=(predictions,))
        except OutputPathError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        report = evaluate_file(data_dir, predictions, dot_to_underscore=dot_to_underscore)
    except (FileNotFoundError, BfclDataError) as exc:
        raise click.ClickException(str(exc)) from None
    if not report.rows:
        raise click.ClickException(f"{predictions}: no predictions in the file; nothing to score")
    for lineno, message in report.problems:
        click.echo(f"{predictions}:{lineno}: {message}", err=True)
    if out is not None:
        _write_jsonl(out, report.rows)
    click.echo(report.table())
    if report.problems:
        click.echo(
            f"{len(report.problems)} line(s) counted invalid: see the messages above", err=True
        )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@eval_group.command("bfcl-run")
@click.option(
    "--model",
    required=True,
    help="hf/vllm: a local checkpoint directory; openai: the served model name.",
)
@click.option(
    "--backend", type=click.Choice(["hf", "vllm", "openai"]), default="hf", show_default=True
)
@click.option("--base-url", default=None, help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")
@click.option(
    "--categories",
    default=None,
    help="Comma-separated BFCL categories (default: every single-turn category in --data "
    "and the four multi-turn ones).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Entries per category (seeded)."
)
@click.option(
    "--multi-turn-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Entries per multi-turn category (default: --limit).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the per-category subset.")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Single-turn BFCL data dir (multi-turn data comes with the installed bfcl-eval).",
)
@click.option(
    "--out",
    type=OutputDir(files=RUN_FILES),
    default="bfcl_run",
    show_default=True,
    help="Writes predictions.jsonl (BFCL result format), verdicts.jsonl, scores.json "
    "(--force replaces them).",
)
@FORCE_OPTION
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--thinking", is_flag=True, help="enable_thinking in the chat template.")
@click.option("--date", default=ProjectParams().date, show_default=True, help="Prompt date.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--max-model-len", default=None, type=click.IntRange(min=16))
@click.option("--cpu-threads", default=None, type=click.IntRange(min=1), help="hf on CPU.")
@click.option("--tensor-parallel-size", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--dot-to-underscore", is_flag=True, help="Function names with '.' as '_'.")
@click.option(
    "--cache-dir",
    default=None,
    help="Request cache (default: project.cache_dir); a rerun resumes from it.",
)
@click.option("--no-cache", is_flag=True, help="Do not use the request cache.")
@click.option(
    "--max-engine-failure-share",
    default=MAX_ENGINE_FAILURE_SHARE,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Stop when more single-turn entries / multi-turn conversations than this share "
    "fail in the engine (server down, 401, prompt too long) instead of scoring them wrong.",
)
def bfcl_run_cmd(
    model: str, backend: str, base_url: str | None, categories: str | None, limit: int | None,
    multi_turn_limit: int | None, seed: int, data_dir: Path, out: Path, max_tokens: int, thinking: bool, date: str,
    batch_size: int, max_model_len: int | None, cpu_threads: int | None,
    tensor_parallel_size: int, dot_to_underscore: bool, cache_dir: str | None, no_cache: bool,
    max_engine_failure_share: float, force: bool,
) -> None:  # fmt: skip
    """Run a model on BFCL (single- and multi-turn) with the loop's prompt format and print
    the leaderboard columns (BFCL v3 Table 1 and v4) and every category's accuracy."""
    from looptool.engines.base import EngineError
    from looptool.engines.factory import open_engine
    from looptool.eval.bfcl import official
    from looptool.eval.bfcl.run import ENTRY_ORDER, category_counts, run_bfcl
    from looptool.eval.bfcl.scores import format_table, v3_columns, v4_columns
    from looptool.params.engines import EngineSpec

    cats = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    unknown = [c for c in cats or [] if c not in ENTRY_ORDER]
    if unknown:
        raise click.BadParameter(
            f"unknown {unknown}; known: {', '.join(ENTRY_ORDER)}", param_hint="--categories"
        )
    try:
        version = official.version()
        spec = EngineSpec(
            backend=backend, model=model, batch_size=batch_size, max_model_len=max_model_len,
            cpu_threads=cpu_threads, tensor_parallel_size=tensor_parallel_size,
            base_url=base_url,
        )  # fmt: skip
        engine = open_engine(spec, "policy", use_cache=not no_cache, cache_dir=cache_dir)
        start = time.monotonic()
        rows = run_bfcl(
            engine, data_dir, date=date, categories=cats, per_category=limit,
            multi_turn_per_category=multi_turn_limit, seed=seed,
            max_tokens=max_tokens, thinking=thinking, dot_to_underscore=dot_to_underscore,
            progress=True, max_engine_failure_share=max_engine_failure_share,
        )  # fmt: skip
        wall = time.monotonic() - start
    except (
        official.BfclEvalMissing, EngineError, FileNotFoundError, ValueError,
        BfclDataError,
    ) as exc:  # fmt: skip
        raise click.ClickException(str(exc)) from None
    counts = category_counts(
        pl.DataFrame([{k: r[k] for k in ("category", "ok", "reason")} for r in rows])
    )
    _write_jsonl(out / "predictions.jsonl", [
        {"id": r["item_id"], "result": r["result"]} for r in rows if "result" in r
    ])  # fmt: skip
    _write_jsonl(out / "verdicts.jsonl", [
        {"id": r["item_id"], "category": r["category"], "valid": r["ok"], "reason": r["reason"],
         **{k: r[k] for k in ("message", "refused", "stop") if k in r}}
        for r in rows
    ])  # fmt: skip
    scores = {
        "bfcl_eval_version": version, "model": model, "backend": backend,
        "limit_per_category": limit, "multi_turn_limit": multi_turn_limit,"wall_seconds": round(wall, 1),
        "categories": {c: {"correct": ok, "n": n} for c, (ok, n) in counts.items()},
        "v3": v3_columns(counts), "v4": v4_columns(counts),
        "engine": engine.stats() if callable(getattr(engine, "stats", None)) else None,
    }  # fmt: skip
    write_text_atomic(out / "scores.json", json.dumps(scores, indent=2) + "\n")
    click.echo(format_table(counts))
    click.echo(f"{len(rows)} entries in {wall:.1f} s; wrote {out}/")
