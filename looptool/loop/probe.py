"""Greedy capability probing (GCP, paper step b): decode, match, perplexity, HPPL.

Every sample of D_j is decoded greedily (temperature 0) by the iteration's policy with the
training prompt (:mod:`looptool.core.prompting`), parsed by the codec and compared with its
label by strict ToolMatch. Perplexity (Eq. 3) is taken over the policy's answer tokens: the
think block, when thinking is on, is excluded (DESIGN §5). Without a think block the
generation's own token log-probs are used (no second pass); with one, the answer alone is
scored teacher-forced right after the prompt, i.e. not conditioned on the reasoning (the
engine protocol cannot score a continuation of a partial assistant turn). Optionally the
label is scored teacher-forced instead. HPPL = the highest-PPL mastered samples (top
quantile or count), ranked within each kind group (call / clarify / irrelevant) by default
(``hppl_groups``): free-text PPL is not comparable with JSON-call PPL. A request the engine
cannot answer (:class:`~looptool.engines.base.Failed`) leaves a row with ``engine_error``:
a failed generation is a mismatch with reason ``engine_failed`` (the judge drops it), a
failed scoring pass leaves the PPL null (never HPPL).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from looptool.core.codec import THINK_CLOSE, parse_completion, render_label
from looptool.core.match import KIND_GROUP_OF, match_strict
from looptool.core.tables import PROBE, rows_to_table, sample_from_row
from looptool.core.types import Sample, canonical_json
from looptool.engines.base import Engine, Failed, Generation, SamplingParams, ScoreRequest
from looptool.engines.failures import ENGINE_FAILED, failure_note
from looptool.engines.policy_request import policy_request
from looptool.params.loop import HpplGroups, ProbeParams


def answer_part(raw: str) -> str:
    """The completion after its (last) think block: what the policy answers with."""
    if THINK_CLOSE in raw:
        return raw.rsplit(THINK_CLOSE, 1)[1].lstrip()
    return raw


def unique_samples(dataset: pa.Table) -> pa.Table:
    """One row per sample_id (a D_j may hold deliberate repeats), first occurrence kept."""
    df = pl.from_arrow(dataset)
    assert isinstance(df, pl.DataFrame)
    return df.unique(subset="sample_id", keep="first", maintain_order=True).to_arrow()


def _ppl(logprobs: Sequence[float]) -> float:
    if not logprobs:
        return math.nan
    mean = math.fsum(logprobs) / len(logprobs)
    try:
        return math.exp(-mean)
    except OverflowError:
        return math.inf


def run_probe(
    engine: Engine,
    dataset: pa.Table,
    *,
    iteration: int,
    date: str,
    params: ProbeParams,
) -> pa.Table:
    """Probe every distinct sample of ``dataset``; returns a :data:`PROBE` table with
    ``hppl`` already selected (see :func:`select_hppl`)."""
    rows = unique_samples(dataset).to_pylist()
    samples: list[Sample] = [sample_from_row(r) for r in rows]
    template_kwargs = {"enable_thinking": params.thinking}
    want_logprobs = params.ppl_source == "output" and params.ppl_method == "auto"
    sampling = SamplingParams(max_tokens=params.max_tokens, temperature=0.0, logprobs=want_logprobs)
    requests = [policy_request(s, date, sampling, params.thinking) for s in samples]
    generations: list[Generation | Failed] = [
        g if isinstance(g, Failed) else g[0]
        for g in (engine.generate(requests) if requests else [])
    ]
    errors: list[str | None] = [
        failure_note(g) if isinstance(g, Failed) else None for g in generations
    ]

    # Perplexity: from the generation's log-probs when they cover exactly the answer,
    # otherwise one teacher-forced scoring pass (batched) over what must be scored.
    ppl: list[float] = [math.nan] * len(samples)
    n_tok: list[int] = [0] * len(samples)
    to_score: list[tuple[int, ScoreRequest]] = []
    for i, (s, gen) in enumerate(zip(samples, generations, strict=True)):
        if isinstance(gen, Failed):
            continue
        if params.ppl_source == "label":
            completion = render_label(s.label)
        else:
            has_think = THINK_CLOSE in gen.text or "<think>" in gen.text
            if want_logprobs and not has_think and gen.logprobs:
                ppl[i], n_tok[i] = _ppl(gen.logprobs), len(gen.logprobs)
                continue
            completion = answer_part(gen.text)
        to_score.append(
            (
                i,
                ScoreRequest(
                    messages=requests[i].messages,
                    completion=completion,
                    tools=requests[i].tools,
                    chat_template_kwargs=template_kwargs,
                ),
            )
        )
    if to_score:
        scores = engine.score([r for _, r in to_score])
        for (i, _), sc in zip(to_score, scores, strict=True):
            if isinstance(sc, Failed):
                errors[i] = f"score {failure_note(sc)}"
                continue
            ppl[i], n_tok[i] = _ppl(sc.token_logprobs), sc.n_tokens

    out = []
    for i, (row, s, gen) in enumerate(zip(rows, samples, generations, strict=True)):
        if isinstance(gen, Failed):
            out.append(
                {
                    "sample_id": row["sample_id"],
                    "iter": iteration,
                    "kind": row["kind"],
                    "raw_text": "",
                    "match": False,
                    "match_reason": ENGINE_FAILED,
                    "n_tokens": 0,
                    "hppl": False,
                    "engine_error": errors[i],
                }
            )
            continue
        parsed = parse_completion(gen.text)
        result = match_strict(parsed, s.label)
        label = parsed.to_label()
        err = None
        if parsed.error is not None:
            err = f"{parsed.error.kind}: {parsed.error.message}"
            if gen.finish_reason == "length":
                err += f" (output cut at max_tokens={params.max_tokens})"
        out.append(
            {
                "sample_id": row["sample_id"],
                "iter": iteration,
                "kind": row["kind"],
                "raw_text": gen.text,
                "think": parsed.think,
                "prediction": canonical_json(label.to_json()) if label is not None else None,
                "parse_error": err,
                "match": result.ok,
                "match_reason": result.reason,
                "ppl": None if math.isnan(ppl[i]) else ppl[i],
                "n_tokens": n_tok[i],
                "hppl": False,
                "engine_error": errors[i],
            }
        )
    table = rows_to_table(out, PROBE)
    return select_hppl(table, params)


def _finite_ppl() -> pl.Expr:
    return pl.col("ppl").is_not_null() & pl.col("ppl").is_finite()


def kind_group_col() -> pl.Expr:
    """The kind group (call / clarify / irrelevant) of a frame's ``kind`` column."""
    return pl.col("kind").replace(KIND_GROUP_OF)


def hppl_count(n_pool: int, params: ProbeParams) -> int:
    """How many of ``n_pool`` candidates the HPPL rule selects."""
    if params.hppl_mode == "count":
        return min(params.hppl_count, n_pool)
    return min(n_pool, math.ceil(params.hppl_quantile * n_pool))


def rank_by_ppl(df: pl.DataFrame, groups: HpplGroups = "pooled") -> pl.DataFrame:
    """HPPL candidates (``ppl``, ``sample_id``, and ``kind`` unless pooled) in selection
    order under ``hppl_groups``: every ``head(n)`` is the HPPL choice of size ``n``.

    pooled: highest PPL first (sample_id breaks ties, so the order is total and
    reproducible). calls_only: the same over the call-kind rows only. by_kind: highest
    PPL first within each kind group, the groups interleaved by Webster's rule (key
    (rank + 0.5) / group size), so any ``head(n)`` holds each group in proportion to its
    size instead of letting one group's PPL scale crowd out the others.
    """
    df = df.sort(["ppl", "sample_id"], descending=[True, False], nulls_last=True)
    if groups == "pooled":
        return df
    df = df.with_columns(_g=kind_group_col())
    if groups == "calls_only":
        return df.filter(pl.col("_g") == "call").drop("_g")
    # Rows are in PPL order, so int_range over the group is each row's rank in its group.
    webster = (pl.int_range(pl.len()).over("_g") + 0.5) / pl.len().over("_g")
    return (
        df.with_columns(_k=webster)
        .sort(["_k", "ppl", "sample_id"], descending=[False, True, False], nulls_last=True)
        .drop("_g", "_k")
    )


def select_hppl(probe: pa.Table, params: ProbeParams) -> pa.Table:
    """Set ``hppl`` on the top mastered samples by PPL (mode quantile or count), ranked
    as ``params.hppl_groups`` says (:func:`rank_by_ppl`)."""
    df = pl.from_arrow(probe)
    assert isinstance(df, pl.DataFrame)
    mastered = df.filter(pl.col("match") & _finite_ppl())
    pool = rank_by_ppl(mastered, params.hppl_groups)
    # The size follows the pool the rule ranks (calls_only: the call-kind samples).
    chosen = pool.head(hppl_count(pool.height, params)).get_column("sample_id")
    df = df.with_columns(hppl=pl.col("sample_id").is_in(chosen.implode()))
    return df.to_arrow().cast(PROBE)


def hppl_threshold(
    probe: pa.Table | pl.DataFrame, groups: HpplGroups = "pooled"
) -> dict[str, float]:
    """The HPPL cut: lowest PPL among the selected HPPL samples, per kind group (one
    entry ``"all"`` when ``groups`` is pooled); a group with no selected sample has none.

    A BOTH_CORRECT mismatch at or above its group's cut joins HPPL (Alg. 1).
    """
    df = pl.from_arrow(probe) if isinstance(probe, pa.Table) else probe
    assert isinstance(df, pl.DataFrame)
    group = pl.lit("all") if groups == "pooled" else kind_group_col()
    sel = df.filter(pl.col("hppl"))
    if sel.height == 0:
        return {}
    cuts = sel.group_by(group.alias("g")).agg(pl.col("ppl").min())
    return {g: float(v) for g, v in cuts.iter_rows()}


def probe_metrics(probe: pa.Table) -> dict:
    """Mastery rate, parse failures, mismatch reasons, PPL summary, HPPL size and cut;
    the counts, HPPL size and cut also per kind group (call / clarify / irrelevant)."""
    df = pl.from_arrow(probe)
    assert isinstance(df, pl.DataFrame)
    n = df.height
    mastered = int(df.get_column("match").sum()) if n else 0
    ppl = df.filter(_finite_ppl()).get_column("ppl")
    reasons = Counter(df.filter(~pl.col("match")).get_column("match_reason").to_list())
    cuts = hppl_threshold(df, "by_kind")
    groups = (
        df.group_by(kind_group_col().alias("group"))
        .agg(
            n=pl.len().cast(pl.Int64),
            mastered=pl.col("match").sum().cast(pl.Int64),
            hppl=pl.col("hppl").sum().cast(pl.Int64),
        )
        .sort("group")
    )

    def stat(s: pl.Series, fn: str) -> float | None:
        return None if s.len() == 0 else float(getattr(s, fn)())

    return {
        "n": n,
        "mastered": mastered,
        "mismatch": n - mastered,
        "mastery_rate": mastered / n if n else 0.0,
        "parse_failures": int(df.get_column("parse_error").is_not_null().sum()),
        "engine_failed": int(df.get_column("engine_error").is_not_null().sum()),
        "mismatch_reasons": dict(sorted(reasons.items())),
        "ppl_mean": stat(ppl, "mean"),
        "ppl_median": stat(ppl, "median"),
        "ppl_max": stat(ppl, "max"),
        "mean_tokens": float(df.get_column("n_tokens").mean()) if n else 0.0,  # type: ignore[arg-type]
        "hppl": int(df.get_column("hppl").sum()) if n else 0,
        "hppl_threshold": min(cuts.values(), default=None),
        "by_kind_group": {
            g: {
                "n": gn,
                "mastered": m,
                "mismatch": gn - m,
                "mastery_rate": m / gn,
                "hppl": h,
                "hppl_threshold": cuts.get(g),
            }
            for g, gn, m, h in groups.iter_rows()
        },
    }
