"""CLI: `looptool cache info|stats|prune|clear`, `looptool engines smoke`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from looptool.engines.base import EngineError
from looptool.engines.cache_store import (
    CACHE_FILE,
    RequestCache,
    default_cache_dir,
    find_repo_root,
    parse_age,
    parse_size,
)


def _cache_dir(option: str | None) -> Path:
    """--cache-dir, else env LOOPTOOL_CACHE_DIR, else params.yaml project.cache_dir, else default."""
    if option:
        return Path(option)
    configured = None
    params = find_repo_root() / "params.yaml"
    if params.exists():
        import yaml

        try:
            raw = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
            configured = (raw.get("project") or {}).get("cache_dir")
        except yaml.YAMLError:
            configured = None  # an invalid params.yaml must not block cache maintenance
    return default_cache_dir(configured)


def _refuse_during_repro(path: Path) -> None:
    """Exit with one line when a DVC command runs in the project (or the repository that
    holds the cache): a stage may be reading or writing the cache right now."""
    from looptool.store.dvc_lock import running_dvc_pid

    seen: set[Path] = set()
    for start in (Path.cwd(), path.parent):
        root = find_repo_root(start)
        if root in seen or not (root / ".dvc").is_dir():
            continue
        seen.add(root)
        pid = running_dvc_pid(root)
        if pid is not None:
            who = f"PID {pid}" if pid > 0 else "PID unknown"
            raise click.ClickException(
                f"a repro is running in {root}: {who}; change the cache when it ends"
            )


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} MB"


@click.group("cache")
def cache_group() -> None:
    """The request cache shared by every engine (outside DVC outputs)."""


@cache_group.command("info")
@click.option("--cache-dir", default=None, help="Cache directory (default: project.cache_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_info(cache_dir: str | None, as_json: bool) -> None:
    """Show the cache location, size and entries per backend/model/kind."""
    path = _cache_dir(cache_dir) / CACHE_FILE
    if not path.exists():
        info = {"path": str(path), "entries": 0, "bytes_on_disk": 0, "groups": []}
    else:
        with RequestCache(path) as cache:
            info = cache.info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"cache: {info['path']}")
    click.echo(f"entries: {info['entries']}   size on disk: {info['bytes_on_disk'] / 1e6:.2f} MB")
    for g in info["groups"]:
        click.echo(f"  {g['backend']:<8} {g['kind']:<9} {g['entries']:>8}  {g['model_id']}")


@cache_group.command("stats")
@click.option("--cache-dir", default=None, help="Cache directory (default: project.cache_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_stats_cmd(cache_dir: str | None, as_json: bool) -> None:
    """Entries and bytes per role, model fingerprint and stage; hit rate of the last run.

    Bytes are the key plus the stored response. The last run is, per stage and role, the
    newest engine session (one stage's run); entries stored before these were recorded
    show role/stage `?`.
    """
    path = _cache_dir(cache_dir) / CACHE_FILE
    if not path.exists():
        raise click.ClickException(f"no cache at {path}")
    with RequestCache(path) as cache:
        st = cache.stats()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"cache: {st['path']}")
    click.echo(
        f"entries: {st['entries']:,}   entry bytes: {_mb(st['bytes'])}   "
        f"on disk: {_mb(st['bytes_on_disk'])}"
    )
    for title, col in (("role", "role"), ("model", "model_id"), ("stage", "stage")):
        click.echo(f"\nby {title}:")
        for g in st[f"by_{'model' if col == 'model_id' else col}"]:
            click.echo(f"  {g['entries']:>9,} {_mb(g['bytes']):>14}  {g[col] or '?'}")
    rate = st["last_run_hit_rate"]
    click.echo(
        "\nlast run per stage and role"
        + ("" if rate is None else f" (overall hit rate {rate:.1%})")
        + ":"
    )
    if not st["last_runs"]:
        click.echo("  (none recorded)")
    for r in st["last_runs"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["updated"]))
        hr = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.1%}"
        click.echo(
            f"  {r['stage'] or '(outside dvc)':<16} {r['role'] or '?':<10} hits {r['hits']:>7,} "
            f"misses {r['misses']:>7,} ({hr:>6})  +{_mb(r['bytes_written'])}  {when}"
        )


@cache_group.command("prune")
@click.option("--cache-dir", default=None, help="Cache directory (default: project.cache_dir).")
@click.option(
    "--keep-fingerprints-of", "keep_fps", multiple=True, metavar="PATTERN",
    help="Checkpoint path pattern, e.g. 'data/iter_*/model' (repeatable): entries of a "
    "checkpoint matching it are kept only for the fingerprints those checkpoints have now.",
)  # fmt: skip
@click.option("--older-than", default=None, metavar="AGE",
              help="Delete entries last used longer ago than AGE (30d, 12h, 2w).")  # fmt: skip
@click.option("--max-bytes", default=None, metavar="SIZE",
              help="Then delete the least recently used entries until the rest fit (2GB).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_prune_cmd(
    cache_dir: str | None,
    keep_fps: tuple[str, ...],
    older_than: str | None,
    max_bytes: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete request-cache entries by checkpoint fingerprint, age or total size.

    Refused while a DVC command (e.g. `dvc repro`) runs in the project: a stage may be
    using the cache. Entries of other models (judge, generator, endpoints) are kept by
    --keep-fingerprints-of; --older-than and --max-bytes apply to every entry.

    Example: looptool cache prune --keep-fingerprints-of 'data/iter_*/model' --max-bytes 20GB
    """
    try:
        age = parse_age(older_than) if older_than is not None else None
    except ValueError as exc:
        raise click.ClickException(f"--older-than: {exc}") from None
    try:
        limit = parse_size(max_bytes) if max_bytes is not None else None
    except ValueError as exc:
        raise click.ClickException(f"--max-bytes: {exc}") from None
    if not keep_fps and age is None and limit is None:
        raise click.ClickException(
            "nothing to prune by: give --keep-fingerprints-of, --older-than and/or --max-bytes"
        )
    path = _cache_dir(cache_dir) / CACHE_FILE
    if not path.exists():
        raise click.ClickException(f"no cache at {path}")
    _refuse_during_repro(path)
    with RequestCache(path) as cache:
        res = cache.prune(keep_fps, older_than=age, max_bytes=limit, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for pat, fps in res["kept_fingerprints"].items():
        click.echo(f"{pat}: keeping fingerprints {', '.join(fps) or '(no checkpoint there)'}")
    why = ", ".join(f"{k} {v:,}" for k, v in sorted(res["deleted_by"].items()))
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {res['deleted']:,} entries ({_mb(res['deleted_bytes'])}"
        + (f"; {why}" if why else "")
        + f"), kept {res['kept']:,} entries ({_mb(res['kept_bytes'])})"
    )
    if not dry_run:
        click.echo(
            f"{res['path']}: {_mb(res['bytes_on_disk_before'])} -> "
            f"{_mb(res['bytes_on_disk_after'])} on disk"
        )


@cache_group.command("clear")
@click.option("--cache-dir", default=None, help="Cache directory (default: project.cache_dir).")
@click.option("--backend", default=None, help="Only entries of this backend.")
@click.option("--model-id", default=None, help="Only entries of this model identity.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def cache_clear(
    cache_dir: str | None, backend: str | None, model_id: str | None, yes: bool
) -> None:
    """Delete cached responses (all, or one backend / model)."""
    path = _cache_dir(cache_dir) / CACHE_FILE
    if not path.exists():
        click.echo(f"no cache at {path}")
        return
    what = " ".join(
        x for x in (backend and f"backend={backend}", model_id and f"model_id={model_id}") if x
    )
    _refuse_during_repro(path)
    if not yes:
        click.confirm(f"delete {what or 'all'} entries from {path}?", abort=True)
    with RequestCache(path) as cache:
        n = cache.clear(backend=backend, model_id=model_id)
    click.echo(f"deleted {n} entries from {path}")


@click.group("engines")
def engines_group() -> None:
    """Engine utilities."""


@engines_group.command("smoke")
@click.option(
    "--backend", type=click.Choice(["hf", "vllm", "openai"]), default="vllm", show_default=True
)
@click.option(
    "--model", required=True, help="Local checkpoint dir (hf/vllm) or served model name (openai)."
)
@click.option("--base-url", default=None, help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")
@click.option("--n", "n", default=64, show_default=True, help="Requests per kind.")
@click.option("--max-tokens", default=128, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--tensor-parallel-size", default=1, show_default=True)
@click.option("--gpu-memory-utilization", default=0.9, show_default=True)
@click.option("--max-model-len", default=None, type=int)
@click.option("--cpu-threads", default=None, type=int, help="hf on CPU: torch threads.")
@click.option("--enforce-eager", is_flag=True, help="vllm: no graph capture / compile.")
@click.option(
    "--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto"
)
def smoke_cmd(
    backend,
    model,
    base_url,
    n,
    max_tokens,
    batch_size,
    tensor_parallel_size,
    gpu_memory_utilization,
    max_model_len,
    cpu_threads,
    enforce_eager,
    dtype,
) -> None:
    """Run generate, score and choose on a model and print throughput (no cache)."""
    from looptool.engines.factory import make_engine
    from looptool.engines.smoke import format_table, run_smoke
    from looptool.params.engines import EngineSpec

    try:
        spec = EngineSpec(
            backend=backend,
            model=model,
            base_url=base_url,
            batch_size=batch_size,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            cpu_threads=cpu_threads,
            enforce_eager=enforce_eager,
            dtype=dtype,
        )
        engine = make_engine(spec, "smoke", cache=None)
        rows = run_smoke(engine, n=n, max_tokens=max_tokens)
    except (EngineError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    click.echo(format_table(rows, f"{backend} {engine.model_id}"))
