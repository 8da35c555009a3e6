"""The count checks of bench/paper_scale.py on a finished dry run (no main(): not a bench).

Read from the loop's own tables, with the true labels read again here (not the oracle's
report of itself):

- every D_j (j = 1..J+1) has |D_j| rows, and its splits sum to |D_j|;
- GCP: among probed samples whose current label is the true one, the mismatch share is
  the oracle's ``error_rate`` (within 4 sigma of the binomial); a sample whose label is
  not the true one (seed label noise, a relabel the judge got wrong) is a mismatch
  unless the oracle's wrong answer happens to equal it;
- JGLV: one verdict per mismatch; on the LLM tier, the share of verdicts that differ from
  the one the true labels give is the oracle's ``judge_error_rate`` (4 sigma);
- EDDE: k children per error seed (MR + LR outcomes).
"""

from __future__ import annotations

import glob
import json
import math
from collections import Counter
from pathlib import Path

import polars as pl

from looptool.core.match import match_strict
from looptool.core.tables import label_from_json
from looptool.core.types import Label


def _within(observed: int, n: int, p: float) -> bool:
    """``observed`` successes of ``n`` are within 4 sigma (+2) of a rate ``p``."""
    return abs(observed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 2


class Truth:
    """sample id -> true label, from the tables the oracle reads, in its order."""

    def __init__(self, root: Path):
        self.labels: dict[str, tuple[str, str | None]] = {}
        noise = root / "data/seed/label_noise.parquet"
        for sid, clean in pl.read_parquet(noise).select("sample_id", "clean_label").iter_rows():
            self.labels.setdefault(sid, (clean, None))
        paths = [root / "data/seed/samples.parquet", root / "data/seed/heldout.parquet"]
        paths += [Path(p) for p in sorted(glob.glob(str(root / "data/iter_*/expansions.parquet")))]
        for path in paths:
            df = pl.read_parquet(path, columns=["sample_id", "label", "kind"])
            for sid, label, kind in df.iter_rows():
                if label not in (None, "null"):
                    self.labels.setdefault(sid, (label, kind))
        self._parsed: dict[str, Label] = {}

    def label(self, sid: str) -> Label | None:
        if sid not in self._parsed and sid in self.labels:
            self._parsed[sid] = label_from_json(*self.labels[sid])
        return self._parsed.get(sid)

    def right(self, sid: str, label_json: str | None, kind: str | None = None) -> bool | None:
        truth = self.label(sid)
        if truth is None:
            return None
        if label_json is None:
            return False
        return match_strict(label_from_json(label_json, kind), truth).ok


def true_verdict(label_ok: bool, pred_ok: bool) -> str:
    if label_ok == pred_ok:
        return "BOTH_CORRECT" if label_ok else "BOTH_WRONG"
    return "PRED_WRONG" if label_ok else "LABEL_WRONG"


def check_run(root: Path, params: dict) -> bool:
    """Print the checks; True when every one passes."""
    n_d = params["loop"]["dataset_size"]
    js = sorted(int(k) for k in params["iterations"])
    p_err = params["engines"]["policy"]["oracle"]["error_rate"]
    p_judge = params["engines"]["judge"]["oracle"]["judge_error_rate"]
    k = params["loop"]["expand"]["k"]
    truth = Truth(root)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    print("checks (the loop's tables against the true labels)")
    for j in [*js, js[-1] + 1]:
        ds = pl.read_parquet(root / f"data/iter_{j}/dataset.parquet", columns=["split"])
        splits = dict(sorted(Counter(ds.get_column("split").to_list()).items()))
        check(ds.height == n_d and sum(splits.values()) == n_d, f"D_{j}: {ds.height} rows")
        print(
            f"  D_{j}: {ds.height:,} rows = {' + '.join(f'{s} {n:,}' for s, n in splits.items())}"
        )
    for j in js:
        d = root / f"data/iter_{j}"
        ds = pl.read_parquet(d / "dataset.parquet", columns=["sample_id", "label", "kind"])
        ds = ds.unique("sample_id", keep="first")
        probe = pl.read_parquet(d / "probe.parquet", columns=["sample_id", "match", "prediction"])
        rows = probe.join(ds, on="sample_id", how="left")
        right = [0, 0]  # label right: (n, mismatches)
        wrong = [0, 0]
        for sid, match, _, label, kind in rows.iter_rows():
            ok = truth.right(sid, label, kind)
            bucket = right if ok else wrong
            bucket[0] += 1
            bucket[1] += not match
        check(_within(right[1], right[0], p_err), f"probe@{j}: mismatch rate")
        # a wrong answer can equal a wrong label (both another tool, say): at most p_err
        matched = wrong[0] - wrong[1]
        check(matched <= wrong[0] * p_err + 4 * math.sqrt(wrong[0] * p_err) + 2,
              f"probe@{j}: {matched} samples with an untrue label matched")  # fmt: skip
        mismatches = right[1] + wrong[1]
        verdicts = pl.read_parquet(d / "verdicts.parquet")
        check(verdicts.height == mismatches, f"judge@{j}: {verdicts.height} verdicts")
        kinds = dict(sorted(Counter(verdicts.get_column("verdict").to_list()).items()))
        preds = dict(zip(probe["sample_id"], probe["prediction"], strict=True))
        llm = verdicts.filter(
            (pl.col("tier") == "llm")
            & ~pl.col("reason").str.contains("label fails schema rules|cannot relabel")
        )
        flipped = 0
        for sid, verdict, before in llm.select("sample_id", "verdict", "label_before").iter_rows():
            label_ok = bool(truth.right(sid, before))
            pred_ok = bool(truth.right(sid, preds.get(sid)))
            flipped += verdict != true_verdict(label_ok, pred_ok)
        check(_within(flipped, llm.height, p_judge), f"judge@{j}: LLM-tier error rate")
        outcomes = Counter(verdicts.get_column("outcome").to_list())
        seeds = outcomes["MR"] + outcomes["LR"]
        exp = pl.read_parquet(d / "expansions.parquet", columns=["accepted"])
        check(exp.height == k * seeds, f"expand@{j}: {exp.height} children for {seeds} seeds")
        metrics = json.loads((d / "expand_metrics.json").read_text())
        check(metrics.get("error_seeds") == seeds, f"expand@{j}: metrics error_seeds")
        print(
            f"  probe@{j}: {rows.height:,} probed; label true: {right[1]:,}/{right[0]:,} "
            f"mismatch ({right[1] / max(1, right[0]):.3f}, oracle error_rate {p_err}); label "
            f"not true: {wrong[1]:,}/{wrong[0]:,} mismatch"
        )
        print(
            f"  judge@{j}: {verdicts.height:,} verdicts {kinds}; LLM tier {llm.height:,}, "
            f"{flipped:,} differ from the truth ({flipped / max(1, llm.height):.3f}, oracle "
            f"judge_error_rate {p_judge})"
        )
        print(
            f"  expand@{j}: {seeds:,} error seeds (MR {outcomes['MR']:,} + LR "
            f"{outcomes['LR']:,}) x k {k} = {exp.height:,} children, "
            f"{int(exp.get_column('accepted').sum()):,} accepted"
        )
    for what in failures:
        print(f"  FAILED: {what}")
    print("checks: " + ("all passed" if not failures else f"{len(failures)} failed"))
    return not failures
