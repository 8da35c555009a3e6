"""Benchmark: `looptool diff` between two synthetic 1M-sample dataset versions.

Writes (not timed) D1 and D2 (DATASET columns) with a known answer: 30% of D1 removed,
as many new samples added, every 20th common sample relabeled and every 3rd moved to
another split; then times store.diff.diff_versions (the CLI's code path) and the whole
`looptool diff` command, and checks the counts against the construction.

    .venv/bin/python -m bench.diff [--n 1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from looptool.store.diff import diff_versions

SPLITS = "['ES','EE','HPPL','SEED_NEW']"


def write_versions(root: Path, n: int) -> dict[str, int]:
    """D1 = ids [0, n); D2 = ids [0.3n, 1.3n); returns the expected counts."""
    lo, hi = int(0.3 * n), n + int(0.3 * n)
    con = duckdb.connect()
    cols = """
        's' || lpad(i::VARCHAR, 9, '0') AS sample_id,
        '[{"description":"d","name":"f","parameters":{"properties":{"x":{"type":"string"}},"type":"object"}}]' AS tools,
        '[{"content":"request ' || i::VARCHAR || '","role":"user"}]' AS context,
        @label AS label, @label_hash AS label_hash, @rev::INTEGER AS label_rev,
        'single' AS kind, 'seed' AS origin, 0::INTEGER AS born_iter,
        NULL::VARCHAR AS parent_id, NULL::VARCHAR AS dialogue_id, NULL::INTEGER AS step,
        @split AS split, @j::INTEGER AS iter, 0::INTEGER AS copy
    """

    def fill(**kw: object) -> str:
        out = cols
        for k in sorted(kw, key=len, reverse=True):  # @label_hash before @label
            out = out.replace(f"@{k}", str(kw[k]))
        return out

    d1 = fill(
        label="'{\"calls\":[],\"text\":\"a' || i::VARCHAR || '\"}'", label_hash="'h' || i::VARCHAR",
        rev=0, split=f"{SPLITS}[1 + i % 4]", j=1,
    )  # fmt: skip
    relabel = f"i % 20 = 0 AND i < {n}"
    d2 = fill(
        label=f"CASE WHEN {relabel} THEN '{{\"calls\":[],\"text\":\"b' || i::VARCHAR || '\"}}' "
              "ELSE '{\"calls\":[],\"text\":\"a' || i::VARCHAR || '\"}' END",
        label_hash=f"CASE WHEN {relabel} THEN 'r' ELSE 'h' END || i::VARCHAR",
        rev=f"CASE WHEN {relabel} THEN 1 ELSE 0 END",
        split=f"{SPLITS}[1 + (i + CASE WHEN i % 3 = 0 AND i < {n} THEN 1 ELSE 0 END) % 4]", j=2,
    )  # fmt: skip
    for j, body, a, b in ((1, d1, 0, n), (2, d2, lo, hi)):
        out = root / "data" / f"iter_{j}" / "dataset.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT {body} FROM range({a}, {b}) t(i) ORDER BY hash(i)) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
        )
    con.close()
    common = range(lo, n)
    return {
        "added": hi - n,
        "removed": lo,
        "relabeled": sum(1 for i in range(lo - lo % 20, n, 20) if i >= lo),
        "split_moved": sum(1 for i in range(lo - lo % 3, n, 3) if i >= lo),
        "common": len(common),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="keep the synthetic versions here")
    args = ap.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_diff_"))
    try:
        t = time.perf_counter()
        want = write_versions(root, args.n)
        print(f"wrote D1 ({args.n:,} samples) and D2 in {time.perf_counter() - t:.1f} s ({root})")

        times, d = [], None
        for _ in range(args.repeat):
            t = time.perf_counter()
            d = diff_versions("D1", "D2", root=root, examples=5)
            times.append(time.perf_counter() - t)
        assert d is not None
        got = {k: d.counts[k] for k in want}
        status = "ok" if got == want else f"MISMATCH expected {want}"
        exe = Path(sys.executable).with_name("looptool")
        cli = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            subprocess.run([str(exe), "diff", "D1", "D2", "--json", "--root", str(root)],
                           check=True, capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - t)

        print(f"\n{'measure':<36}{'first s':>10}{'best s':>10}")
        print(f"{'diff_versions D1 -> D2 (in process)':<36}{times[0]:>10.3f}{min(times):>10.3f}")
        print(f"{'`looptool diff --json`, whole CLI':<36}{cli[0]:>10.3f}{min(cli):>10.3f}")
        print(f"\n{'count':<14}{'got':>12}{'expected':>12}")
        for k in want:
            print(f"{k:<14}{got[k]:>12,}{want[k]:>12,}")
        print(f"check: {status}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
