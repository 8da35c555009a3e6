"""`looptool report`: one self-contained HTML page of a run (charts inline as SVG).

The page has no script, no external style, font or image: it opens the same on an
offline node as anywhere else. Each section pairs its charts with the table of the
numbers drawn (``data-table`` names them), all from looptool.report.data.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from looptool.report import charts as ch
from looptool.report.data import (
    TRAIN_FIRST,
    ReportData,
    arms_from_elsewhere,
    collect_report_data,
)
from looptool.store.io import write_text_atomic

# section id -> heading, in page order
SECTIONS: dict[str, str] = {
    "eval": "Evaluation per iteration",
    "train": "Training per iteration",
    "data": "D_j composition, mastery and PPL",
    "jglv": "JGLV: judge verdicts and label corrections",
    "edde": "EDDE: error-driven expansion",
    "seed": "Seed data",
}
SPLIT_ORDER = ("SEED", "ES", "EE", "HPPL", "SEED_NEW", "MASTERED")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px 48px;color:#222}
h1{margin:24px 0 4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
nav a{margin-right:12px}figure.chart{margin:12px 0}figure.chart svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.t{text-align:left;font-family:ui-monospace,monospace;max-width:460px;overflow-wrap:anywhere}
.empty{color:#888;font-style:italic}.meta{color:#555}.warning{color:#a40;font-weight:600}
"""


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _cell(v: object) -> str:
    if v is None:
        return "<td>–</td>"
    if isinstance(v, float):
        return f"<td>{v:.4f}</td>"
    if isinstance(v, int | bool):
        return f"<td>{v}</td>"
    return f'<td class="t">{_esc(v)}</td>'


def table(name: str, df: pl.DataFrame, caption: str = "") -> str:
    """An HTML table of ``df`` (floats to 4 decimals), tagged ``data-table=name``."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in df.iter_rows())
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f'<table data-table="{_esc(name)}">{cap}<tr>{head}</tr>{body}</table>'


def _source(d: ReportData, figure: str, what: str, view: str) -> str:
    """A caption naming where the numbers come from: the view, or the metrics fallback."""
    if figure in d.from_metrics:
        return f"{what} ({view}; iterations without the table: the stage's metrics JSON)"
    return f"{what} ({view})"


def figure(name: str, svg: str) -> str:
    return f'<figure class="chart" data-chart="{_esc(name)}">{svg}</figure>'


def empty(what: str) -> str:
    return f'<p class="empty">Not built yet: {_esc(what)}.</p>'


def _iters(df: pl.DataFrame) -> list[int]:
    return sorted(df["iter"].unique().to_list()) if "iter" in df.columns else []


def _col(df: pl.DataFrame, name: str) -> list:
    return df[name].to_list()


def _drawn(lines: list[ch.Line]) -> list[ch.Line]:
    """The lines with at least one value (a column of nulls draws nothing)."""
    return [ln for ln in lines if any(v is not None for v in ln.y)]


def _arm_lines(arms: pl.DataFrame, value: str, with_ci: bool) -> list[ch.Line]:
    if arms.is_empty() or value not in arms.columns:
        return []
    out = []
    for (arm,), g in arms.group_by("arm", maintain_order=True):
        ci = with_ci and {"ci_low", "ci_high"} <= set(g.columns)
        out.append(ch.Line(f"{arm} (compare)", _col(g, "iteration"), _col(g, value),
                           _col(g, "ci_low") if ci else None, _col(g, "ci_high") if ci else None,
                           dashed=True))  # fmt: skip
    return out


def section_eval(d: ReportData) -> str:
    parts: list[str] = []
    h = d.heldout
    if h.is_empty() and d.arms.is_empty():
        return empty("eval@j (data/iter_j/eval.json)")
    own = [] if h.is_empty() else [ch.Line("this run", _col(h, "iter"), _col(h, "accuracy"),
                                           _col(h, "ci_low"), _col(h, "ci_high"))]  # fmt: skip
    parts.append(figure("heldout", ch.line_chart(
        _drawn(own + _arm_lines(d.arms, "heldout_exact", True)),
        title="Held-out exact match (band: 95% Wilson interval)", xlabel="iteration",
        ylabel="exact match", ylim=(0, 1))))  # fmt: skip
    calls = (
        [] if h.is_empty() else [ch.Line("this run", _col(h, "iter"), _col(h, "tool_call_rate"))]
    )
    calls = _drawn(calls + _arm_lines(d.arms, "tool_call_rate", False))
    if calls:
        parts.append(figure("tool_call_rate", ch.line_chart(
            calls, title="Held-out tool-call rate (answers with a <tool_call> block)",
            xlabel="iteration", ylabel="share of answers", ylim=(0, 1))))  # fmt: skip
    if not h.is_empty():
        parts.append(table("heldout", h, "held-out exact match (eval.json) and tool-call rate "
                                         "(eval_items)"))  # fmt: skip
    if not d.bfcl.is_empty():
        wide = (
            d.bfcl.pivot(on="iter", index="category", values="accuracy", sort_columns=True)
            .rename(lambda c: c if c == "category" else f"iter {c}")
            .sort(pl.col("category") != "overall", "category")  # overall first
        )
        n = d.bfcl.group_by("category").agg(n=pl.col("n").max())
        wide = wide.join(n, on="category", how="left")
        groups = {c: _col(wide, c) for c in wide.columns if c.startswith("iter ")}
        parts.append(figure("bfcl", ch.bar_chart(
            _col(wide, "category"), groups, title="BFCL accuracy per category",
            ylabel="accuracy")))  # fmt: skip
        parts.append(table("bfcl", wide, "BFCL accuracy per category and iteration (eval.json)"))
    else:
        parts.append(empty("BFCL results"))
    if not d.arms.is_empty():
        if "bfcl_accuracy" in d.arms.columns:
            overall = d.bfcl.filter(pl.col("category") == "overall")
            own_bfcl = [ch.Line("this run", _col(overall, "iter"), _col(overall, "accuracy"))]
            parts.append(figure("arms_bfcl", ch.line_chart(
                _drawn(own_bfcl + _arm_lines(d.arms, "bfcl_accuracy", False)),
                title="BFCL overall accuracy per arm",
                xlabel="iteration", ylabel="accuracy", ylim=(0, 1))))  # fmt: skip
        if note := arms_from_elsewhere(h, d.arms):
            parts.append(f'<p class="warning">Warning: {_esc(note)}.</p>')
        parts.append(table("arms", d.arms, "arms from compare/compare.csv (looptool compare)"))
    return "".join(parts)


def section_train(d: ReportData) -> str:
    s = d.train_steps
    if s.is_empty():
        return empty("train@j per-step logs (DVCLive: data/iter_j/dvclive/plots/metrics)")
    metrics = [c for c in s.columns if c not in ("iter", "step", "epoch")]
    metrics = [c for c in TRAIN_FIRST if c in metrics] + [
        c for c in metrics if c not in TRAIN_FIRST
    ]
    panels = []
    for m in metrics:
        lines = _drawn([ch.Line(f"iter {j}", _col(g, "step"), _col(g, m))
                        for (j,), g in s.group_by("iter", maintain_order=True)])  # fmt: skip
        if lines:
            panels.append((m, lines))
    parts = [figure("train_steps", ch.small_multiples(panels, xlabel="step"))]
    if not d.train_summary.is_empty():
        wide = d.train_summary.pivot(on="key", index="iter", values="value").sort("iter")
        parts.append(table("train_summary", wide, "train_metrics.json per iteration"))
    return "".join(parts)


def section_data(d: ReportData) -> str:
    parts: list[str] = []
    c = d.composition
    if c.is_empty():
        return empty("D_j (data/iter_j/dataset.parquet)")
    wide = c.pivot(on="split", index="iter", values="n").sort("iter").fill_null(0)
    splits = [s for s in SPLIT_ORDER if s in wide.columns]
    splits += [s for s in wide.columns if s not in splits and s != "iter"]
    wide = wide.select("iter", *splits)
    parts.append(figure("composition", ch.bar_chart(
        [f"D{j}" for j in _col(wide, "iter")], {s: _col(wide, s) for s in splits},
        title="D_j composition by split", ylabel="rows", stacked=True)))  # fmt: skip
    parts.append(
        table(
            "composition", wide, _source(d, "composition", "rows of D_j per split", "datasets view")
        )
    )
    m = d.mastery
    if m.is_empty():
        parts.append(empty("probe@j (data/iter_j/probe.parquet)"))
        return "".join(parts)
    parts.append(figure("mastery", ch.line_chart(
        [ch.Line("mastery rate", _col(m, "iter"), _col(m, "mastery_rate"))],
        title="Mastery rate of D_j under greedy probing", xlabel="iteration",
        ylabel="share matched", ylim=(0, 1))))  # fmt: skip
    parts.append(
        table(
            "mastery",
            m,
            _source(d, "mastery", "mastered = greedy prediction matches the label", "probe view"),
        )
    )
    p = d.ppl
    if not p.is_empty():
        thresholds = {} if "hppl_threshold" not in m.columns else {
            f"iter {j}": t for j, t in m.select("iter", "hppl_threshold").iter_rows()
            if t is not None}  # fmt: skip
        panels = [(f"iter {j}", {
            "mastered": p.filter((pl.col("iter") == j) & pl.col("mastered"))["ppl"].to_list(),
            "mismatched": p.filter((pl.col("iter") == j) & ~pl.col("mastered"))["ppl"].to_list(),
        }) for j in _iters(p)]  # fmt: skip
        parts.append(figure("ppl", ch.histograms(panels, xlabel="PPL of the label",
                                                 marks=thresholds)))  # fmt: skip
        summary = (p.group_by("iter", "mastered")
                   .agg(n=pl.len().cast(pl.Int64), ppl_median=pl.col("ppl").median(),
                        ppl_mean=pl.col("ppl").mean()).sort("iter", "mastered"))  # fmt: skip
        parts.append(table("ppl", summary, "PPL of mastered vs mismatched samples"))
    else:
        parts.append(empty("PPL per sample (data/iter_j/probe.parquet)"))
    return "".join(parts)


def section_jglv(d: ReportData) -> str:
    v = d.verdicts
    if v.is_empty():
        return empty("judge@j (data/iter_j/verdicts.parquet)")
    parts: list[str] = []
    keyed = v.with_columns(group=pl.format("iter {} · {}", "iter", "tier"))
    wide = keyed.pivot(on="verdict", index="group", values="n", sort_columns=True).fill_null(0)
    parts.append(figure("verdicts", ch.bar_chart(
        _col(wide, "group"), {c: _col(wide, c) for c in wide.columns if c != "group"},
        title="Verdicts by iteration and tier", ylabel="mismatched samples", stacked=True)))  # fmt: skip
    parts.append(
        table(
            "verdicts",
            v,
            _source(d, "verdicts", "verdicts per iteration and tier", "verdicts view"),
        )
    )
    jc = d.judge_calls
    if jc.width > 1:
        parts.append(figure("judge_calls", ch.bar_chart(
            [f"iter {j}" for j in _col(jc, "iter")],
            {c: _col(jc, c) for c in jc.columns if c != "iter"},
            title="LLM judge calls made vs avoided (tiers 0-1), order disagreements",
            ylabel="calls / items")))  # fmt: skip
        parts.append(table("judge_calls", jc, "judge_metrics.json"))
    parts.append("<h3>Label corrections (LABEL_WRONG)</h3>")
    if d.correction_counts.is_empty():
        parts.append('<p class="meta">No label was corrected in any iteration.</p>')
    else:
        parts.append(
            table(
                "corrections",
                d.correction_counts,
                _source(d, "correction_counts", "relabeled samples per iteration", "verdicts view"),
            )
        )
        if d.corrections.is_empty():
            parts.append(empty("examples (data/iter_j/verdicts.parquet)"))
        else:
            parts.append(
                table("correction_examples", d.corrections, "examples: label before / after")
            )
    if d.noise.is_empty():
        parts.append('<p class="meta">Label-noise injection is off (seed.label_noise = 0): '
                     "no precision / recall to report.</p>")  # fmt: skip
    else:
        wide = d.noise.pivot(on="key", index="iter", values="value").sort("iter")
        parts.append(table("label_noise", wide, "relabeling vs injected noise "
                                                "(data/seed/label_noise.parquet)"))  # fmt: skip
    return "".join(parts)


def section_edde(d: ReportData) -> str:
    e = d.edde
    if e.is_empty():
        return empty("expand@j (data/iter_j/expansions.parquet)")
    wide = e.pivot(on="iter", index="scenario", values="acceptance", sort_columns=True)
    parts = [figure("edde", ch.bar_chart(
        _col(wide, "scenario"), {f"iter {c}": _col(wide, c) for c in wide.columns if c != "scenario"},
        title="EDDE acceptance rate by scenario", ylabel="accepted / generated")),  # fmt: skip
        table("edde", e, _source(d, "edde", "EDDE children per scenario", "expansions view"))]  # fmt: skip
    r = d.rejects
    if r.is_empty():
        parts.append('<p class="meta">No EDDE child was rejected.</p>')
    else:
        tiers = r.group_by("iter", "reject_tier").agg(pl.col("n").sum()).sort("iter", "reject_tier")
        tw = tiers.pivot(on="reject_tier", index="iter", values="n", sort_columns=True).fill_null(0)
        parts.append(figure("rejects", ch.bar_chart(
            [f"iter {j}" for j in _col(tw, "iter")], {c: _col(tw, c) for c in tw.columns if c != "iter"},
            title="EDDE rejects by tier", ylabel="children", stacked=True)))  # fmt: skip
        top = (
            r.sort("n", descending=True).group_by("iter", maintain_order=True).head(8).sort("iter")
        )
        parts.append(
            table(
                "reject_reasons",
                top,
                _source(d, "rejects", "top reject reasons per iteration", "expansions view"),
            )
        )
    return "".join(parts)


def section_seed(d: ReportData) -> str:
    if d.seed_kinds.is_empty():
        return empty("seed samples (data/seed/samples.parquet)")
    div = pl.DataFrame({"figure": list(d.seed_diversity),
                        "value": [None if v is None else float(v) for v in d.seed_diversity.values()]})  # fmt: skip
    parts = [table("seed_diversity", div, "diversity of the seed pool (samples view)")]
    kw = d.seed_kinds.pivot(on="version", index="kind", values="n").fill_null(0).sort("kind")
    parts.append(figure("seed_kinds", ch.bar_chart(
        _col(kw, "kind"), {c: _col(kw, c) for c in kw.columns if c != "kind"},
        title="Samples by kind", ylabel="samples")))  # fmt: skip
    parts.append(table("seed_kinds", d.seed_kinds, "samples view"))
    if not d.seed_domains.is_empty():
        parts.append(figure("seed_domains", ch.bar_chart(
            _col(d.seed_domains, "domain"), {"APIs": _col(d.seed_domains, "apis")},
            title="Synthesized APIs by domain", ylabel="APIs")))  # fmt: skip
        parts.append(table("seed_domains", d.seed_domains, "seed_apis metrics"))
    if not d.seed_tools.is_empty():
        top = d.seed_tools.head(15)
        parts.append(figure("seed_tools", ch.bar_chart(
            _col(top, "tool"), {"calls": _col(top, "calls")},
            title=f"Most called tools in seed labels (top {top.height} of "
                  f"{d.seed_tools.height})", ylabel="calls", horizontal=True)))  # fmt: skip
    return "".join(parts)


BUILDERS: dict[str, Callable[[ReportData], str]] = {
    "eval": section_eval, "train": section_train, "data": section_data,
    "jglv": section_jglv, "edde": section_edde, "seed": section_seed,
}  # fmt: skip


def render_report(d: ReportData, title: str = "LoopTool run report") -> str:
    """The whole page as one HTML string."""
    iters = sorted(set(_iters(d.composition)) | set(_iters(d.heldout)))
    nav = "".join(f'<a href="#{k}">{_esc(v.split(":")[0])}</a>' for k, v in SECTIONS.items())
    body = "".join(
        f'<section id="{k}" data-section="{k}"><h2>{_esc(SECTIONS[k])}</h2>{BUILDERS[k](d)}</section>'
        for k in SECTIONS
    )
    meta = (f"project {_esc(d.root)} · iterations {', '.join(map(str, iters)) or 'none'}"
            + (f" · arms: {', '.join(_esc(a) for a in d.arms['arm'].unique(maintain_order=True))}"
               if not d.arms.is_empty() else ""))  # fmt: skip
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            f'<h1>{_esc(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav>{body}'
            "</body></html>\n")  # fmt: skip


def write_report(out: Path, root: str | Path = ".", compare_csv: Path | None = None,
                 arms: Sequence[str] = ()) -> Path:  # fmt: skip
    """Collect, render and atomically write the report; returns the written path."""
    data = collect_report_data(root, compare_csv=compare_csv, arms=tuple(arms))
    write_text_atomic(out, render_report(data))
    return out
