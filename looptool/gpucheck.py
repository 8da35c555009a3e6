"""The one-GPU check behind scripts/gpu_check.sh: the whole loop (2 iterations, smoke
sizes) on ``params.gpu-check.yaml`` in a scratch copy of the repository, with a pass/fail
table per DVC stage and its wall time; at the first failure it stops and prints the log
tail.

Modes: ``hf`` (transformers on CUDA in bf16: the locked-down node), ``vllm`` (vLLM
policy and judge, GRPO with colocated vLLM rollouts, then the engine smoke timings of
generate / score / choose), ``vllm-cpu`` (``--engines vllm --device cpu``: the same on
vLLM's CPU build in float32, run from the venv ``make venv-vllm`` builds), and
``dry-run`` (the hf flow on CPU in fp32, for CI).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = "params.gpu-check.yaml"
MODES = ("hf", "vllm", "vllm-cpu", "dry-run")
# Generated data never goes into the scratch copy: the check rebuilds everything. data/models/
# and data/engines/ are copied (their READMEs are tracked; the judge's and generator's
# stages depend on data/engines/<role>/; checkpoints and records in them are git-ignored
# DVC outputs, which ls-files does not list).
SKIP_PREFIXES = ("data/seed", "data/iter_", "data/tiny_model")
_RUNNING = re.compile(r"Running stage '([^']+)'")


@dataclass
class StageRow:
    stage: str
    seconds: float
    ok: bool


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree[key]
    tree[leaf] = value  # a misspelt key fails params validation (extra keys are forbidden)


def mode_overrides(mode: str, model: str | None = None) -> dict[str, Any]:
    """Dotted params keys that turn the check profile into ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} ({', '.join(MODES)})")
    out: dict[str, Any] = {}
    if model:  # a converted checkpoint (e.g. SmolLM2) instead of the tiny model built there
        out.update({"engines.policy.model": model, "engines.judge.model": model})
        # the judge's checkpoint is a DVC dependency by name (stage judge_checkpoint@check)
        out["engines.role_checkpoints.judge"] = {"check": model}
    if mode in ("dry-run", "vllm-cpu"):
        for role in ("policy", "judge"):
            out.update(
                {
                    f"engines.{role}.device": "cpu",
                    f"engines.{role}.dtype": "float32",
                    f"engines.{role}.gpus": None,
                    f"engines.{role}.cpu_threads": 1,
                }
            )
        for section in ("warmstart", "train"):
            out.update({f"{section}.device": "cpu", f"{section}.bf16": False})
    if mode in ("vllm", "vllm-cpu"):
        for role in ("policy", "judge"):
            out.update(
                {
                    f"engines.{role}.backend": "vllm",
                    f"engines.{role}.gpu_memory_utilization": 0.35,
                    f"engines.{role}.max_model_len": 4096,
                    f"engines.{role}.enforce_eager": True,  # start-up beats graph capture here
                }
            )
        out.update(
            {
                "train.use_vllm": True,
                "train.vllm_mode": "colocate",
                "train.vllm_gpu_memory_utilization": 0.3,
            }
        )
    return out


def check_params(mode: str, model: str | None = None, profile: Path | None = None) -> dict:
    """The check profile with ``mode``'s overrides applied (validated)."""
    from looptool.params import Params

    raw = yaml.safe_load((profile or REPO / PROFILE).read_text())
    for key, value in mode_overrides(mode, model).items():
        _set(raw, key, value)
    Params.model_validate(raw)  # a typo fails here, not half way through the run
    return raw


def prepare(workdir: Path, params: dict) -> None:
    """Copy the repository's tracked and untracked-but-not-ignored files (no generated
    data) into ``workdir``, write ``params`` as its params.yaml, commit it (DVC needs git)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file() or rel.startswith(SKIP_PREFIXES):
            continue
        dst = workdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    (workdir / "dvc.lock").unlink(missing_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=gpu-check", "-c", "user.email=gpu-check@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "gpu check"]):
        subprocess.run([*git, *args], cwd=workdir, check=True, capture_output=True)


def _env(workdir: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "LOOPTOOL_CACHE_DIR": str(workdir / ".cache" / "looptool"),
        "HF_HUB_OFFLINE": "1",
    }


def run_stages(workdir: Path, log: Path) -> tuple[list[StageRow], int]:
    """``dvc repro`` in ``workdir``, output to ``log``; one row per stage DVC ran (wall
    time from its start to the next stage's start), and the exit code."""
    rows: list[StageRow] = []
    started: tuple[str, float] | None = None
    dvc = str(Path(sys.executable).parent / "dvc")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [dvc, "repro"],
            cwd=workdir,
            env=_env(workdir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            hit = _RUNNING.search(line)
            if hit:
                now = time.monotonic()
                if started:
                    rows.append(StageRow(started[0], now - started[1], True))
                started = (hit.group(1), now)
        code = proc.wait()
    if started:
        rows.append(StageRow(started[0], time.monotonic() - started[1], code == 0))
    return rows, code


def format_table(rows: list[StageRow], extra: list[tuple[str, float, bool]] = ()) -> str:
    lines = [f"{'stage':<28} {'result':<6} {'seconds':>9}", "-" * 45]
    for r in [*rows, *(StageRow(*e) for e in extra)]:
        lines.append(f"{r.stage:<28} {'pass' if r.ok else 'FAIL':<6} {r.seconds:>9.1f}")
    return "\n".join(lines)


def engine_timings(workdir: Path, model: Path, cpu: bool = False) -> tuple[int, str]:
    """vLLM generate / score / choose on the trained checkpoint (`looptool engines smoke`)."""
    looptool = str(Path(sys.executable).parent / "looptool")
    cmd = [looptool, "engines", "smoke", "--backend", "vllm", "--model", str(model), "--n", "64"]
    if cpu:  # as the stages ran it: eager (no graph compile), float32, short context
        cmd += ["--enforce-eager", "--dtype", "float32", "--max-model-len", "4096"]
    res = subprocess.run(
        cmd,
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
    )
    return res.returncode, res.stdout + res.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__)
    ap.add_argument("--engines", choices=("hf", "vllm"), default="hf")
    ap.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu: --engines vllm on vLLM's CPU build (make venv-vllm), float32; "
        "--engines hf is --dry-run",
    )
    ap.add_argument("--dry-run", action="store_true", help="the hf flow on CPU (CI)")
    ap.add_argument("--model", help="a converted local checkpoint instead of the tiny model")
    ap.add_argument("--workdir", help="scratch directory (default: a new temp dir)")
    ap.add_argument("--tail", type=int, default=40, help="log lines shown on failure")
    args = ap.parse_args(argv)
    mode = "dry-run" if args.dry_run else args.engines
    if args.device == "cpu":
        mode = "vllm-cpu" if args.engines == "vllm" else "dry-run"
    try:
        params = check_params(mode, args.model)
    except (ValueError, KeyError) as exc:
        print(f"gpu_check: error: {PROFILE}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="looptool-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    prepare(workdir, params)
    log = workdir / "gpu_check.log"
    print(f"gpu_check: mode {mode}, workdir {workdir}, log {log}", flush=True)
    rows, code = run_stages(workdir, log)
    extra: list[tuple[str, float, bool]] = []
    if code == 0 and mode in ("vllm", "vllm-cpu"):
        t = time.monotonic()
        smoke_code, smoke_out = engine_timings(
            workdir, workdir / "data/iter_2/model", cpu=mode == "vllm-cpu"
        )
        extra.append(("vllm engine smoke", time.monotonic() - t, smoke_code == 0))
        print(smoke_out)
        code = code or smoke_code
    print(format_table(rows, extra))
    print(f"total {time.monotonic() - t0:.1f} s: {'PASS' if code == 0 else 'FAIL'}")
    if code != 0:
        tail = log.read_text().splitlines()[-args.tail :]
        print(f"--- last {len(tail)} lines of {log} ---", *tail, sep="\n")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
