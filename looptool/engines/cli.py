"""CLI: `looptool cache info|clear`, `looptool build-tiny-model`, `looptool engines smoke`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from looptool.engines.base import EngineError
from looptool.engines.cache import CACHE_FILE, RequestCache, default_cache_dir, find_repo_root


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
    if not yes:
        click.confirm(f"delete {what or 'all'} entries from {path}?", abort=True)
    with RequestCache(path) as cache:
        n = cache.clear(backend=backend, model_id=model_id)
    click.echo(f"deleted {n} entries from {path}")


@click.command("build-tiny-model")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--seed", default=0, show_default=True, type=int)
def build_tiny_model_cmd(out: str, seed: int) -> None:
    """Build the tiny random Qwen3 + tokenizer offline (seconds; deterministic per seed)."""
    from looptool.engines.tiny_model import build_tiny_model

    click.echo(f"built {build_tiny_model(out, seed=seed)}")


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
