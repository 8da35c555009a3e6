"""compare.png: held-out exact match (with its 95% interval band), tool-call rate and
BFCL subset accuracy over iterations, one line per arm."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from looptool.store.io import atomic_path

PANELS = (
    ("heldout_exact", "held-out exact match"),
    ("tool_call_rate", "tool-call rate (call-labelled held-out)"),
    ("bfcl_accuracy", "BFCL subset accuracy"),
)


def write_plot(table: pl.DataFrame, path: Path) -> None:
    """Write the three-panel PNG of ``table`` (compare.csv's columns) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4), squeeze=False)
    try:
        for ax, (col, title) in zip(axes[0], PANELS, strict=True):
            for arm in table["arm"].unique(maintain_order=True).to_list():
                rows = table.filter((pl.col("arm") == arm) & pl.col(col).is_not_null())
                if rows.height == 0:
                    continue
                x = rows["iteration"].to_list()
                (line,) = ax.plot(x, rows[col].to_list(), marker="o", label=arm)
                if col == "heldout_exact":
                    band = rows.filter(pl.col("ci_low").is_not_null())
                    ax.fill_between(
                        band["iteration"].to_list(), band["ci_low"].to_list(),
                        band["ci_high"].to_list(), color=line.get_color(), alpha=0.15,
                    )  # fmt: skip
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("iteration (0 = warm start)")
            ax.set_ylim(-0.02, 1.02)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        n = table["n"].drop_nulls()
        if n.len():
            fig.suptitle(f"bands: 95% Wilson interval, held-out n = {n.max()}", fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
