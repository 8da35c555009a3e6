"""Judge metrics: verdicts per tier, outcomes and LLM calls made vs avoided
(:func:`judge_metrics`), and the precision / recall of relabeling against the injected
label noise (:func:`label_correction_metrics`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from looptool.core.tables import label_from_json
from looptool.core.types import canonical_json
from looptool.engines.base import Engine
from looptool.loop.judge.vote import supports_choice
from looptool.loop.probe import unique_samples
from looptool.params.loop import JudgeParams


def requests_per_vote(engine: Engine, params: JudgeParams) -> int:
    """LLM requests one (item, order) costs on ``engine``: analysis + choice, or one."""
    mode = params.extraction
    if mode == "auto":
        mode = "choose" if supports_choice(engine) else "parse"
    return 2 if mode == "choose" and params.analysis_max_tokens > 0 else 1


def judge_metrics(
    verdicts: pa.Table,
    *,
    n_llm_items: int,
    n_votes: int,
    judges: Sequence[Engine],
    params: JudgeParams,
    cache: list[dict],
    failed_votes: int = 0,
) -> dict:
    """Verdicts per tier, outcomes, unparsed count, LLM calls made vs avoided, cache stats."""
    df = pl.from_arrow(verdicts)
    assert isinstance(df, pl.DataFrame)
    per_tier: dict[str, dict[str, int]] = {}
    for tier, verdict, n in (
        df.group_by("tier", "verdict").len().sort("tier", "verdict").iter_rows()
    ):
        per_tier.setdefault(tier, {})[verdict] = n
    resolved_early = int(df.filter(pl.col("tier").is_in(["equiv", "rules"])).height)
    per_vote = sum(requests_per_vote(e, params) for e in judges)
    orders = 2 if params.order == "both" else 1
    return {
        "n_mismatch": df.height,
        "verdicts": dict(sorted(Counter(df.get_column("verdict").to_list()).items())),
        "verdicts_per_tier": per_tier,
        "outcomes": dict(sorted(Counter(df.get_column("outcome").to_list()).items())),
        "unparsed": int((df.get_column("verdict") == "UNPARSED").sum()),
        # probe requests that failed (tier engine) and judge votes whose request failed
        "probe_engine_failed": int((df.get_column("tier") == "engine").sum()),
        "judge_engine_failed": failed_votes,
        "llm_items": n_llm_items,
        "llm_calls_made": n_votes * per_vote,
        "llm_calls_avoided": resolved_early * orders * per_vote,
        "resolved_by_tiers_0_1": resolved_early,
        "order_disagreements": int(df.get_column("reason").str.contains("orders disagree").sum()),
        "cache": cache,
    }


def label_correction_metrics(verdicts: pa.Table, dataset: pa.Table, noise: pa.Table) -> dict:
    """Precision / recall of LABEL_WRONG relabeling against the recorded clean labels.

    A D_j sample counts as noisy while its current label equals the injected noisy label.
    """
    canon = {"clean": [], "noisy": []}
    for row in noise.select(["clean_label", "noisy_label"]).to_pylist():
        canon["clean"].append(canonical_json(label_from_json(row["clean_label"]).to_json()))
        canon["noisy"].append(canonical_json(label_from_json(row["noisy_label"]).to_json()))
    nz = pl.DataFrame(
        {
            "sample_id": noise.column("sample_id").to_pylist(),
            "clean": canon["clean"],
            "noisy": canon["noisy"],
        }
    )
    ds = pl.from_arrow(unique_samples(dataset)).select("sample_id", "label")
    vd = pl.from_arrow(verdicts).select("sample_id", "verdict", "label_after")
    assert isinstance(ds, pl.DataFrame) and isinstance(vd, pl.DataFrame)
    noisy = ds.join(nz, on="sample_id").filter(pl.col("label") == pl.col("noisy"))
    flagged = vd.filter(pl.col("verdict") == "LABEL_WRONG").join(nz, on="sample_id", how="left")
    noisy_ids = noisy.get_column("sample_id").implode()
    tp = int(flagged.filter(pl.col("sample_id").is_in(noisy_ids)).height)
    fixed = int(flagged.filter(pl.col("label_after") == pl.col("clean")).height)
    judged_noisy = int(vd.filter(pl.col("sample_id").is_in(noisy_ids)).height)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "noisy_in_dataset": noisy.height,
        "noisy_judged": judged_noisy,
        "relabeled": flagged.height,
        "relabeled_noisy": tp,
        "relabeled_to_clean": fixed,
        "precision": ratio(tp, flagged.height),
        "precision_exact": ratio(fixed, flagged.height),
        "recall": ratio(tp, noisy.height),
        "recall_judged": ratio(tp, judged_noisy),
        "recall_exact": ratio(fixed, noisy.height),
    }
