"""Charts of the loop report, drawn by matplotlib into inline SVG text.

matplotlib renders on the machine that writes the report, so the page needs no script,
font or network at view time; ``svg.fonttype = none`` keeps labels as text (small,
searchable) drawn with the viewer's sans-serif font.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib.figure import Figure

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "looptool-report",  # deterministic ids: reruns give identical files
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Line:
    """One series of a line chart; ``lo``/``hi`` draw an interval band around it."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None
    dashed: bool = False


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inlining in HTML.

    The XML prolog, DOCTYPE (which names a w3.org DTD) and namespace attributes are
    dropped (HTML parses inline SVG without them), and element ids get a per-chart prefix
    so several charts on one page never share an id.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                             "Type": None})  # fmt: skip
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    p = f"c{next(_ids)}-"
    text = re.sub(r'\bid="', f'id="{p}', text)
    text = re.sub(r'href="#', f'href="#{p}', text)
    return re.sub(r"url\(#", f"url(#{p}", text)


def _figure(width: float = 6.4, height: float = 3.0) -> Figure:
    with mpl.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _finish(fig: Figure) -> str:
    with mpl.rc_context(_RC):
        return to_svg(fig)


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _draw_lines(ax, lines: Sequence[Line]) -> None:
    for ln in lines:
        xs = list(ln.x)
        ys = [float("nan") if v is None else v for v in ln.y]
        (h,) = ax.plot(xs, ys, "--o" if ln.dashed else "-o", label=ln.label, ms=3, lw=1.4)
        if ln.lo is not None and ln.hi is not None:
            lo = [float("nan") if v is None else v for v in ln.lo]
            hi = [float("nan") if v is None else v for v in ln.hi]
            ax.fill_between(xs, lo, hi, color=h.get_color(), alpha=0.15, lw=0)
    if len(lines) > 1:
        ax.legend(fontsize=8)


def line_chart(lines: Sequence[Line], *, title: str, xlabel: str, ylabel: str,
               ylim: tuple[float, float] | None = None, integer_x: bool = True) -> str:  # fmt: skip
    """Lines (with optional interval bands) over a shared x axis."""
    with mpl.rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        _draw_lines(ax, lines)
        _style(ax, title, xlabel, ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        return _finish(fig)


def small_multiples(panels: Sequence[tuple[str, Sequence[Line]]], *, xlabel: str,
                    cols: int = 3) -> str:  # fmt: skip
    """One small line chart per (title, lines) panel, in a grid."""
    rows = -(-len(panels) // cols)
    with mpl.rc_context(_RC):
        fig = _figure(width=3.2 * min(cols, len(panels)), height=2.3 * rows)
        for i, (title, lines) in enumerate(panels, 1):
            ax = fig.add_subplot(rows, min(cols, len(panels)), i)
            _draw_lines(ax, lines)
            _style(ax, title, xlabel, "")
            ax.xaxis.get_major_locator().set_params(integer=True)
        return _finish(fig)


def bar_chart(categories: Sequence[str], groups: dict[str, Sequence[float]], *, title: str,
              ylabel: str, stacked: bool = False, horizontal: bool = False) -> str:  # fmt: skip
    """Bars per category, one colour per group (side by side, or stacked)."""
    n = len(groups)
    with mpl.rc_context(_RC):
        height = max(2.6, 0.28 * len(categories) + 1.0) if horizontal else 3.0
        fig = _figure(height=height)
        ax = fig.add_subplot()
        pos = list(range(len(categories)))
        base = [0.0] * len(categories)
        width = 0.8 if stacked or n == 1 else 0.8 / n
        for k, (name, values) in enumerate(groups.items()):
            vals = [float(v or 0) for v in values]
            at = pos if stacked else [p - 0.4 + width * (k + 0.5) for p in pos]
            if horizontal:
                ax.barh(at, vals, height=width, left=base, label=name)
            else:
                ax.bar(at, vals, width=width, bottom=base, label=name)
            if stacked:
                base = [b + v for b, v in zip(base, vals, strict=True)]
        if horizontal:
            ax.set_yticks(pos, list(categories))
            ax.invert_yaxis()
            _style(ax, title, ylabel, "")
        else:
            ax.set_xticks(pos, list(categories), rotation=30 if len(categories) > 6 else 0,
                          ha="right" if len(categories) > 6 else "center")  # fmt: skip
            _style(ax, title, "", ylabel)
        if n > 1:
            ax.legend(fontsize=8)
        return _finish(fig)


def histograms(panels: Sequence[tuple[str, dict[str, Sequence[float]]]], *, xlabel: str,
               marks: dict[str, float] | None = None, bins: int = 20) -> str:  # fmt: skip
    """One panel per (title, {group: values}); groups overlaid on shared bins.

    ``marks`` draws a vertical line per panel title (e.g. that iteration's HPPL threshold).
    """
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    with mpl.rc_context(_RC):
        fig = _figure(width=3.2 * cols, height=2.4 * rows)
        for i, (title, groups) in enumerate(panels, 1):
            ax = fig.add_subplot(rows, cols, i)
            values = [v for vs in groups.values() for v in vs]
            lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
            edges = [lo + (hi - lo or 1.0) * b / bins for b in range(bins + 1)]
            for name, vs in groups.items():
                if vs:
                    ax.hist(list(vs), bins=edges, alpha=0.55, label=f"{name} ({len(vs)})")
            if marks and title in marks:
                ax.axvline(marks[title], color="black", lw=1, ls=":", label="HPPL threshold")
            _style(ax, title, xlabel, "samples")
            ax.legend(fontsize=7)
        return _finish(fig)
