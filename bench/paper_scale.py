"""Benchmark: the whole loop at the paper's sizes on instant engines (issue #29).

Builds a scratch copy of this repository (its own git, .dvc cache and request cache) with
params.paper-scale.yaml as params.yaml: the real stages and dvc.yaml, D_seed ~28k samples,
|D_j| = 18,304, J = 4, the oracle policy and judge (true labels with seeded errors), the
template generator and `train.algorithm: noop` (a placeholder checkpoint, 1 GB, sparse).
Runs every stage with `dvc repro -s <stage>` in DAG order and prints per stage: wall time
(DVC's own start-up, hashing and lock update included), peak RSS (the largest process of
the stage, DVC's included), rows in / out (parquet deps / outs in dvc.lock), bytes added
to data/ and .dvc/cache and to the disk (inodes counted once: a hardlinked output is in
both folders), then totals per iteration against the targets (loop overhead < 5 min and
< 4 GB RSS per iteration). Then times the no-op `dvc repro` (< 2 s), `looptool status`,
`diff`, `lineage`, the docs' SQL examples and `looptool report` (each < 10 s), and checks
the counts (bench/_paper_checks.py): every D_j sums to |D_j| per split; mismatches, JGLV
verdicts and EDDE children follow the oracle's error rates.

    python -m bench paper_scale                      # the paper's sizes (~28k seed samples)
    python -m bench paper_scale --samples 300 --iterations 2 --size-mb 10   # a small run

Exit status 1 when a count check fails (targets are reported, not enforced).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a file too: bench._paper_checks, looptool

from bench._paper_checks import check_run  # noqa: E402
from looptool.gpucheck import prepare  # noqa: E402

ON_REQUEST = True  # `python -m bench` (make bench) skips it: `make bench PAPER_SCALE=1`
PROFILE = REPO / "params.paper-scale.yaml"
PAPER_D = 18304
SAMPLES_PER_DIALOGUE = 2.0  # template dialogues give ~2.2 training samples each (measured)
TARGETS = {"iteration_s": 300.0, "iteration_rss_mb": 4096.0, "noop_repro_s": 2.0, "command_s": 10.0}
WRAP = (  # runs a command, then writes the peak RSS (KB) of its largest descendant
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(rc)"
)
RUNNING = re.compile(r"Running stage '([^']+)'")


def profile_params(samples: int, iterations: int, size_mb: float | None) -> dict:
    """params.paper-scale.yaml, scaled to ``samples`` per D_j and ``iterations``."""
    params = yaml.safe_load(PROFILE.read_text())
    params["iterations"] = {
        str(j): {"j": j, "prev": j - 1, "next": j + 1, "overrides": {}}
        for j in range(1, iterations + 1)
    }
    if size_mb is not None:
        params["train"]["noop"]["checkpoint_bytes"] = int(size_mb * 1e6)
    if samples != PAPER_D:
        loop = params["loop"]
        loop["dataset_size"] = samples
        frac = loop["compose"]["seed_new_start_fraction"]
        pool = samples + sum(
            round(samples * frac * 0.5 ** (j - 2)) for j in range(2, iterations + 1)
        )
        heldout = params["seed"]["heldout_fraction"]
        dialogues = math.ceil(pool / (1 - heldout) / SAMPLES_PER_DIALOGUE * 1.15)
        params["seed"]["dialogues"]["n_dialogues"] = dialogues
        params["seed"]["apis"]["n_draws"] = max(200, min(2000, dialogues // 7))
    return params


def disk(*dirs: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of the files under ``dirs``, inodes counted once."""
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    for d in dirs:
        for dirpath, _, files in os.walk(d):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except FileNotFoundError:
                    continue
                seen[(st.st_dev, st.st_ino)] = (st.st_size, st.st_blocks * 512)
    return sum(a for a, _ in seen.values()), sum(b for _, b in seen.values())


def parquet_rows(root: Path, entries: list[dict] | None) -> int | None:
    n, any_table = 0, False
    for e in entries or []:
        path = root / e["path"]
        if path.suffix == ".parquet" and path.is_file():
            n += pq.read_metadata(path).num_rows
            any_table = True
    return n if any_table else None


class Project:
    """The scratch copy and how to run things in it."""

    def __init__(self, root: Path):
        self.root = root
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LOOPTOOL_CACHE_DIR": str(root / ".cache" / "looptool"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
        self.dvc = str(Path(sys.executable).parent / "dvc")
        self.looptool = str(Path(sys.executable).parent / "looptool")

    def run(self, args: list[str], check: bool = True, timeout: float | None = None):
        """(seconds, stdout) of ``args`` run in the scratch copy."""
        t0 = time.perf_counter()
        res = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        dt = time.perf_counter() - t0
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{(res.stdout + res.stderr)[-4000:]}")
        return dt, res.stdout

    def stage_order(self) -> list[str]:
        _, out = self.run([self.dvc, "repro", "--dry", "--force"])
        return RUNNING.findall(out)

    def run_stage(self, stage: str, log) -> tuple[float, float]:
        """(wall s, peak RSS MB) of `dvc repro -s stage`."""
        rss = self.root / ".bench_rss"
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", WRAP, str(rss), self.dvc, "repro", "-s", stage],
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        dt = time.perf_counter() - t0
        if res.returncode:
            raise RuntimeError(f"dvc repro -s {stage} failed (rc {res.returncode}); see the log")
        return dt, int(rss.read_text()) / 1024

    def lock(self) -> dict:
        return yaml.safe_load((self.root / "dvc.lock").read_text())["stages"]


def run_stages(p: Project, log_path: Path) -> list[dict]:
    rows = []
    order = p.stage_order()
    print(f"{len(order)} stages; log: {log_path}", flush=True)
    head = f"{'stage':<18}{'wall s':>9}{'RSS MB':>9}{'rows in':>10}{'rows out':>10}"
    print(head + f"{'data/ +MB':>11}{'cache +MB':>11}{'disk +MB':>10}", flush=True)
    with open(log_path, "w") as log:
        for stage in order:
            data0, cache0 = disk(p.root / "data"), disk(p.root / ".dvc" / "cache")
            both0 = disk(p.root / "data", p.root / ".dvc" / "cache")
            log.write(f"\n==== {stage}\n")
            log.flush()
            wall, rss = p.run_stage(stage, log)
            entry = p.lock().get(stage, {})
            data1, cache1 = disk(p.root / "data"), disk(p.root / ".dvc" / "cache")
            both1 = disk(p.root / "data", p.root / ".dvc" / "cache")
            row = {
                "stage": stage,
                "wall": wall,
                "rss": rss,
                "rows_in": parquet_rows(p.root, entry.get("deps")),
                "rows_out": parquet_rows(p.root, entry.get("outs")),
                "data": data1[1] - data0[1],
                "cache": cache1[1] - cache0[1],
                "disk": both1[1] - both0[1],
                "apparent": data1[0] - data0[0],
            }
            rows.append(row)
            print(fmt_row(row), flush=True)
    return rows


def fmt_row(r: dict) -> str:
    def n(v):
        return "-" if v is None else f"{v:,}"

    return (
        f"{r['stage']:<18}{r['wall']:>9.1f}{r['rss']:>9.0f}{n(r['rows_in']):>10}"
        f"{n(r['rows_out']):>10}{r['data'] / 1e6:>11.1f}{r['cache'] / 1e6:>11.1f}"
        f"{r['disk'] / 1e6:>10.1f}"
    )


def iteration_totals(rows: list[dict], iterations: int) -> list[dict]:
    out = []
    for j in range(1, iterations + 1):
        mine = [r for r in rows if r["stage"].endswith(f"@{j}")]
        out.append(
            {
                "j": j,
                "wall": sum(r["wall"] for r in mine),
                "rss": max((r["rss"] for r in mine), default=0.0),
                "disk": sum(r["disk"] for r in mine),
                "apparent": sum(r["apparent"] for r in mine),
                "stages": len(mine),
            }
        )
    return out


def sql_examples() -> list[str]:
    """The runnable SQL statements of README.md and docs/*.md (tests/test_docs.py runs them)."""
    out = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"<!-- runnable -->\n```sql\n(.*?)\n```", text, re.DOTALL):
            lines = [ln for ln in block.split("\n") if not ln.strip().startswith("--")]
            out += [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    return out


def time_commands(p: Project, iterations: int) -> list[tuple[str, float, float]]:
    """(command, seconds, target) for the commands a user runs on the finished loop."""
    out = []
    p.run([p.dvc, "repro"])  # the first no-op may still write the state db; time the next
    dt, _ = p.run([p.dvc, "repro"])
    out.append(("dvc repro (no-op)", dt, TARGETS["noop_repro_s"]))
    a, b = max(1, iterations - 1), max(2, iterations)  # the issue's `diff D3 D4` at J = 4
    last = pq.read_table(
        p.root / f"data/iter_{iterations + 1}/dataset.parquet", columns=["sample_id", "origin"]
    )
    origins = last.column("origin").to_pylist()
    pick = next((i for i, o in enumerate(origins) if o in ("relabel", "edde")), 0)
    sample_id = last.column("sample_id")[pick].as_py()
    commands = [
        ["status"],
        ["diff", f"D{a}", f"D{b}"],
        ["lineage", sample_id],
        *(["sql", stmt] for stmt in sql_examples()),
        ["report", "--out", "report.html", "--force"],
    ]
    for args in commands:
        dt, _ = p.run([p.looptool, *args])
        label = " ".join(args) if args[0] != "sql" else f"sql {args[1][:46]}"
        out.append((f"looptool {label}", dt, TARGETS["command_s"]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench paper_scale", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--samples", type=int, default=PAPER_D, help="|D_j| (paper: 18,304)")
    ap.add_argument("--iterations", type=int, default=4, help="J (paper: 4)")
    ap.add_argument("--size-mb", type=float, default=None, help="checkpoint size (default 1000)")
    ap.add_argument("--dir", type=Path, default=None, help="where the scratch copy goes")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    params = profile_params(args.samples, args.iterations, args.size_mb)
    where = args.dir or Path(tempfile.gettempdir())
    where.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="paper-scale-", dir=where))
    load0 = os.getloadavg()
    print(
        f"paper-scale dry run: |D_j| = {args.samples:,}, J = {args.iterations}, "
        f"{params['seed']['dialogues']['n_dialogues']:,} seed dialogues, checkpoint "
        f"{params['train']['noop']['checkpoint_bytes'] / 1e6:,.0f} MB "
        f"(sparse: {params['train']['noop']['sparse']}), in {root}; "
        f"{os.cpu_count()} CPUs, load {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}",
        flush=True,
    )
    ok = False
    try:
        prepare(root, params)
        p = Project(root)
        t0 = time.perf_counter()
        rows = run_stages(p, root / "bench.log")
        total = time.perf_counter() - t0
        print(f"\nall stages: {total:.0f} s; peak RSS {max(r['rss'] for r in rows):.0f} MB")
        print(f"\n{'iteration':<10}{'stages':>7}{'wall s':>9}{'max RSS MB':>12}{'disk +MB':>10}"
              f"{'apparent +MB':>14}   targets: < {TARGETS['iteration_s']:.0f} s, "
              f"< {TARGETS['iteration_rss_mb']:.0f} MB")  # fmt: skip
        for t in iteration_totals(rows, args.iterations):
            flag = "ok" if t["wall"] < TARGETS["iteration_s"] and t["rss"] < TARGETS[
                "iteration_rss_mb"] else "OVER"  # fmt: skip
            print(f"{t['j']:<10}{t['stages']:>7}{t['wall']:>9.1f}{t['rss']:>12.0f}"
                  f"{t['disk'] / 1e6:>10.1f}{t['apparent'] / 1e6:>14.1f}   {flag}")  # fmt: skip
        print(f"\n{'command':<60}{'s':>7}  target")
        for name, dt, target in time_commands(p, args.iterations):
            print(f"{name:<60}{dt:>7.2f}  < {target:g} s {'ok' if dt < target else 'OVER'}")
        print()
        ok = check_run(root, params)
        load1 = os.getloadavg()
        print(f"\nload at the end {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}; bench process "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip
    finally:
        if args.keep or not ok:
            print(f"scratch copy kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
