"""What is built, how big each dataset split is, and what DVC considers stale."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from looptool.store.dvc_lock import dvc_config_problem, dvc_error_line, running_dvc_pid
from looptool.store.train_record import rows_too_long
from looptool.store.views import Layout, connect

# Stage of iteration j -> what its output is (relative to data/iter_j unless noted).
STAGE_OUTPUTS = ("train", "probe", "judge", "expand", "compose", "eval")


@dataclass
class DvcStatus:
    available: bool  # False: not a DVC repo / dvc failed; ``message`` says why
    message: str
    stale: dict[str, list[str]] = field(default_factory=dict)  # stage -> reasons


@dataclass
class Status:
    root: Path
    declared: list[dict]  # params.yaml `iterations` items ({j, prev, next}); [] if unreadable
    params_error: str | None
    seed: dict  # samples / heldout row counts (None when not built)
    iterations: pl.DataFrame  # one row per iteration: sizes per split, built flags, eval
    dvc: DvcStatus
    # the `diversity` block of data/seed/metrics.json (looptool.seed.diversity), if built
    seed_diversity: dict | None = None

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "declared_iterations": self.declared,
            "params_error": self.params_error,
            "seed": self.seed,
            "seed_diversity": self.seed_diversity,
            "iterations": self.iterations.to_dicts(),
            "dvc": {
                "available": self.dvc.available,
                "message": self.dvc.message,
                "stale": self.dvc.stale,
            },
        }


def _declared_iterations(root: Path) -> tuple[list[dict], str | None]:
    """The `iterations` list of params.yaml, read leniently (status must work on bad params)."""
    p = root / "params.yaml"
    if not p.is_file():
        return [], f"{p}: not found"
    try:
        items = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("iterations") or {}
        if isinstance(items, dict):  # keyed by iteration number (the current layout)
            items = list(items.values())
        out = [dict(i) for i in items if isinstance(i, dict) and isinstance(i.get("j"), int)]
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        return [], f"{p}: cannot read `iterations`: {exc}"
    return out, None


def _find_dvc_repo(root: Path) -> Path | None:
    for d in (root, *root.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _reasons(entries: list) -> list[str]:
    """Flatten one stage's `dvc status --json` entries into readable reasons."""
    out: list[str] = []
    for e in entries:
        if isinstance(e, str):
            out.append(e)
            continue
        for kind, changes in e.items():
            if not isinstance(changes, dict):
                out.append(f"{kind}: {changes}")
                continue
            for path, state in changes.items():
                if isinstance(state, dict):  # params file: {key: state}
                    out += [f"{kind}: {path}:{k} {s}" for k, s in state.items()]
                else:
                    out.append(f"{kind}: {path} {state}")
    return out


def dvc_status(root: Path, timeout: float = 300.0) -> DvcStatus:
    """Run ``dvc status --json`` in ``root``; degrade to available=False with a reason."""
    repo = _find_dvc_repo(root)
    if repo is None:
        return DvcStatus(
            False, f"not a DVC repository (no .dvc/ at or above {root}): staleness unknown"
        )
    if not (root / "dvc.yaml").is_file():
        return DvcStatus(False, f"no dvc.yaml in {root}: no stages to check")
    if (problem := dvc_config_problem(repo)) is not None:
        return DvcStatus(False, f"{problem}: staleness unknown")
    if (pid := running_dvc_pid(repo)) is not None:  # `dvc status` would only say "delete the lock"
        who = f"PID {pid}" if pid > 0 else "PID unknown"
        return DvcStatus(False, f"a repro is running: {who} (staleness shown when it ends)")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json"],
            cwd=root, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DvcStatus(False, f"dvc status failed: {exc}")
    if proc.returncode != 0:
        err = dvc_error_line(proc.stderr)
        return DvcStatus(False, f"dvc status exited {proc.returncode}: {err}")
    try:
        raw = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return DvcStatus(False, f"dvc status printed non-JSON output: {proc.stdout[:200]!r}")
    stale = {stage: _reasons(entries) for stage, entries in sorted(raw.items())}
    # an `always_changed` stage (none in our dvc.yaml) is listed on every call: not staleness
    stale = {stage: r for stage, r in stale.items() if r != ["always changed"]}
    msg = "up to date" if not stale else f"{len(stale)} stage(s) stale"
    return DvcStatus(True, msg, stale)


def _eval_headline(path: Path) -> tuple[float | None, float | None]:
    """(held-out strict accuracy, BFCL overall accuracy) from an eval.json, if present."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, None
    heldout = (obj.get("heldout") or {}).get("accuracy")
    bfcl = (obj.get("bfcl") or {}).get("overall", {})
    return heldout, bfcl.get("accuracy") if isinstance(bfcl, dict) else None


def _train_facts(layout: Layout, j: int) -> dict:
    """Of iteration j's training (the warm start for j = 0): ``calls``, the greedy tool-call
    rate on the held-out check prompts (the warm start's check, else train@j's guard),
    ``guard_ok``, and ``rows`` / ``too_long``, the rows of its table and those over the
    length limit, never trained on (None when absent)."""
    name = "warmstart_metrics.json" if j == 0 else "train_metrics.json"
    try:
        obj = json.loads((layout.iter_dir(j) / name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        obj = {}
    check = (obj.get("heldout") or {}) if j == 0 else (obj.get("guard") or {})
    return {
        "calls": check.get("tool_call_rate"),
        "guard_ok": None if j == 0 else check.get("ok"),
        "rows": obj.get("samples"),
        "too_long": rows_too_long(obj),
    }


def collect_status(root: str | Path = ".", check_dvc: bool = True) -> Status:
    layout = Layout.at(root)
    declared, params_error = _declared_iterations(layout.root)
    nxt = {d["j"]: d.get("next", d["j"] + 1) for d in declared}
    con = connect(layout.root, views=("datasets", "samples"))  # only what status reads
    sizes = con.sql(
        "SELECT iter, coalesce(split, '?') AS split, count(*)::BIGINT AS n FROM datasets GROUP BY ALL"
    ).pl()
    seed_counts = con.sql(
        "SELECT version, count(*)::BIGINT AS n FROM samples WHERE version IN ('seed', 'heldout') GROUP BY ALL"
    ).fetchall()
    counts = dict(seed_counts)
    seed = {"samples": counts.get("seed"), "heldout": counts.get("heldout")}

    js = sorted({d["j"] for d in declared} | set(layout.iterations()))
    rows = []
    for j in js:
        d = layout.iter_dir(j)
        heldout_acc, bfcl_acc = _eval_headline(layout.eval_json(j))
        rows.append({
            "iter": j,
            "declared": j in nxt,
            "dataset": int(sizes.filter(pl.col("iter") == j)["n"].sum()) if layout.dataset(j).is_file() else None,
            "train": (layout.model_dir(j) / "config.json").is_file(),
            "probe": (d / "probe.parquet").is_file(),
            "judge": (d / "verdicts.parquet").is_file(),
            "expand": (d / "expansions.parquet").is_file(),
            # iter_0 holds only the warm-start model; D_1 comes from init_dataset, not compose
            "compose": j > 0 and layout.dataset(nxt.get(j, j + 1)).is_file(),
            "eval": layout.eval_json(j).is_file(),
            "heldout_acc": heldout_acc,
            "bfcl_acc": bfcl_acc,
            **_train_facts(layout, j),
        })  # fmt: skip
    table = pl.DataFrame(
        rows,
        schema={"iter": pl.Int64, "declared": pl.Boolean, "dataset": pl.Int64,
                **{s: pl.Boolean for s in STAGE_OUTPUTS},
                "heldout_acc": pl.Float64, "bfcl_acc": pl.Float64,
                "calls": pl.Float64, "guard_ok": pl.Boolean,
                "rows": pl.Int64, "too_long": pl.Int64},
    )  # fmt: skip
    if sizes.height:
        wide = sizes.pivot(on="split", index="iter", values="n", sort_columns=True)
        splits = [c for c in wide.columns if c != "iter"]
        table = table.join(wide.cast({"iter": pl.Int64}), on="iter", how="left").with_columns(
            pl.when(pl.col("dataset").is_not_null()).then(pl.col(splits).fill_null(0))
        )
        front = ["iter", "declared", "dataset", *splits]
        table = table.select(front + [c for c in table.columns if c not in front])
    dvc = dvc_status(layout.root) if check_dvc else DvcStatus(False, "not checked (--no-dvc)")
    return Status(layout.root, declared, params_error, seed, table, dvc, _seed_diversity(layout))


def _seed_diversity(layout: Layout) -> dict | None:
    try:
        obj = json.loads((layout.seed_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return obj.get("diversity") if isinstance(obj, dict) else None


def format_seed_diversity(d: dict) -> list[str]:
    """Two lines (< 100 columns each) of the seed diversity metrics."""
    um = d.get("user_messages") or {}

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return [
        f"seed diversity: {d['functions']['called']} functions, "
        f"openings {um.get('openings')}/{um.get('distinct')}, "
        f"distinct-2/3 {num(um.get('distinct_2'))}/{num(um.get('distinct_3'))}, "
        f"chain {num(d.get('chain_share'))}",
        f"held-out near-duplicates of training: {num(d.get('near_duplicate_share'))} "
        f"(request wording), {num(d.get('edde_near_duplicate_share'))} "
        f"(EDDE rule, Jaccard >= {d.get('edde_threshold', '-')})",
    ]


# compact view: one letter per stage of STAGE_OUTPUTS, so the marks line up under it
STAGE_LETTERS = "tpjxce"
WIDTH = 100  # the compact view fits a 100-column terminal


def _compact(table: pl.DataFrame) -> pl.DataFrame:
    """Stage flags folded into one mark string; split columns and eval kept, short names."""
    marks = pl.concat_str(
        [pl.when(pl.col(s)).then(pl.lit("✓")).otherwise(pl.lit("·")) for s in STAGE_OUTPUTS]
    )
    return (
        table.with_columns(marks.alias(STAGE_LETTERS))
        .drop("declared", "calls", "guard_ok", "rows", "too_long", *STAGE_OUTPUTS)
        .rename({"dataset": "D_j", "heldout_acc": "heldout", "bfcl_acc": "bfcl"})
    )


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def format_status(st: Status, wide: bool = False) -> str:
    """The status as text: 100 columns wide, or every column with ``wide``."""
    lines = [f"project {st.root}"]
    if st.params_error:
        lines.append(f"params: {st.params_error}")
    s = st.seed
    lines.append(
        "seed: "
        + ", ".join(f"{k} {'not built' if v is None else f'{v:,} rows'}" for k, v in s.items())
    )
    if st.seed_diversity:
        lines += [_clip(x, WIDTH) for x in format_seed_diversity(st.seed_diversity)]
    if st.iterations.height:
        if wide:
            # booleans as marks keep the stage matrix narrow enough for a terminal
            shown = st.iterations.with_columns(
                pl.col(pl.Boolean).replace_strict({True: "✓", False: "·"}, return_dtype=pl.String)
            )
            legend = "iterations: ✓ = stage output built (compose@j writes D_{j+1}); split columns = rows of D_j"
        else:
            shown = _compact(st.iterations)
            legend = (
                "iterations: split columns = rows of D_j; heldout, bfcl = eval@j accuracy\n"
                f"stages {STAGE_LETTERS} = {' '.join(STAGE_OUTPUTS)} "
                "(✓ = output built; compose@j writes D_{j+1})"
            )
        with pl.Config(tbl_hide_dataframe_shape=True, tbl_rows=-1, tbl_cols=-1,
                       tbl_width_chars=240 if wide else WIDTH, float_precision=3,
                       tbl_hide_column_data_types=True):  # fmt: skip
            lines += ["", legend, str(shown)]
        if not wide:
            lines.append("(--wide: one column per stage and the declared flag)")
        rates = st.iterations.filter(pl.col("calls").is_not_null())
        if rates.height:
            lines.append(
                _clip(
                    "calls (greedy tool-call rate, call-labelled held-out check prompts): "
                    + ", ".join(
                        f"{j}: {rate:.2f}{' !' if ok is False else ''}"
                        for j, rate, ok in rates.select("iter", "calls", "guard_ok").iter_rows()
                    ),
                    WIDTH,
                )
            )
        cut = st.iterations.filter(pl.col("too_long") > 0)
        if cut.height:
            lines.append(
                _clip(
                    "over the length limit, not trained on (rows of the training table): "
                    + ", ".join(
                        f"{j}: {k} of {n}"
                        for j, k, n in cut.select("iter", "too_long", "rows").iter_rows()
                    ),
                    WIDTH,
                )
            )
        collapsed = st.iterations.filter(pl.col("guard_ok") == False)  # noqa: E712
        for j, rate in collapsed.select("iter", "calls").iter_rows():
            lines.append(
                f"COLLAPSE GUARD (!): train@{j} left a tool-call rate of {rate:.2f} "
                "(< guard.min_ratio x the warm start's)"
            )
    else:
        lines.append("no iterations declared or built")
    lines += ["", f"dvc: {st.dvc.message}"]
    for stage, reasons in st.dvc.stale.items():
        lines.append(f"  {stage}")
        lines += [f"    {r}" if wide else _clip(f"    {r}", WIDTH) for r in reasons[:8]]
        if len(reasons) > 8:
            lines.append(f"    ... {len(reasons) - 8} more")
    return "\n".join(lines)
