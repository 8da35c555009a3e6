"""Greedy capability probing (GCP, paper step b): decode, match, perplexity, HPPL.

Every sample of D_j is decoded greedily (temperature 0) by the iteration's policy with the
training prompt (:mod:`looptool.loop.prompting`), parsed by the codec and compared with its
label by strict ToolMatch. Perplexity (Eq. 3) is taken over the policy's answer tokens: the
think block, when thinking is on, is excluded (DESIGN §5). Without a think block the
generation's own token log-probs are used (no second pass); with one, the answer alone is
scored teacher-forced right after the prompt, i.e. not conditioned on the reasoning (the
engine protocol cannot score a continuation of a partial assistant turn). Optionally the
label is scored teacher-forced instead. HPPL = the highest-PPL mastered samples (top
quantile or count).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from looptool.core.codec import THINK_CLOSE, parse_completion, render_label
from looptool.core.match import match_strict
from looptool.core.tables import PROBE, rows_to_table, sample_from_row
from looptool.core.types import Sample, canonical_json
from looptool.engines.base import Engine, SamplingParams, ScoreRequest
from looptool.loop.prompting import policy_request
from looptool.params.loop import ProbeParams


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
    generations = [g[0] for g in engine.generate(requests)] if requests else []

    # Perplexity: from the generation's log-probs when they cover exactly the answer,
    # otherwise one teacher-forced scoring pass (batched) over what must be scored.
    ppl: list[float] = [math.nan] * len(samples)
    n_tok: list[int] = [0] * len(samples)
    to_score: list[tuple[int, ScoreRequest]] = []
    for i, (s, gen) in enumerate(zip(samples, generations, strict=True)):
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
            ppl[i], n_tok[i] = _ppl(sc.token_logprobs), sc.n_tokens

    out = []
    for i, (row, s, gen) in enumerate(zip(rows, samples, generations, strict=True)):
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
                "raw_text": gen.text,
                "think": parsed.think,
                "prediction": canonical_json(label.to_json()) if label is not None else None,
                "parse_error": err,
                "match": result.ok,
                "match_reason": result.reason,
                "ppl": None if math.isnan(ppl[i]) else ppl[i],
                "n_tokens": n_tok[i],
                "hppl": False,
            }
        )
    table = rows_to_table(out, PROBE)
    return select_hppl(table, params)


def _finite_ppl() -> pl.Expr:
    return pl.col("ppl").is_not_null() & pl.col("ppl").is_finite()


def hppl_count(n_pool: int, params: ProbeParams) -> int:
    """How many of ``n_pool`` candidates the HPPL rule selects."""
    if params.hppl_mode == "count":
        return min(params.hppl_count, n_pool)
    return min(n_pool, math.ceil(params.hppl_quantile * n_pool))


def rank_by_ppl(df: pl.DataFrame) -> pl.DataFrame:
    """Highest PPL first; sample_id breaks ties so the order is total and reproducible."""
    return df.sort(["ppl", "sample_id"], descending=[True, False])


def select_hppl(probe: pa.Table, params: ProbeParams) -> pa.Table:
    """Set ``hppl`` on the top mastered samples by PPL (mode quantile or count)."""
    df = pl.from_arrow(probe)
    assert isinstance(df, pl.DataFrame)
    pool = rank_by_ppl(df.filter(pl.col("match") & _finite_ppl()))
    chosen = pool.head(hppl_count(pool.height, params)).get_column("sample_id")
    df = df.with_columns(hppl=pl.col("sample_id").is_in(chosen.implode()))
    return df.to_arrow().cast(PROBE)


def hppl_threshold(probe: pa.Table | pl.DataFrame) -> float | None:
    """Lowest PPL among the selected HPPL samples (None when nothing was selected).

    A BOTH_CORRECT mismatch at or above it joins HPPL (Alg. 1).
    """
    df = pl.from_arrow(probe) if isinstance(probe, pa.Table) else probe
    assert isinstance(df, pl.DataFrame)
    sel = df.filter(pl.col("hppl"))
    return None if sel.height == 0 else float(sel.get_column("ppl").min())  # type: ignore[arg-type]


def probe_metrics(probe: pa.Table) -> dict:
    """Mastery rate, parse failures, mismatch reasons, PPL summary, HPPL size and cut."""
    df = pl.from_arrow(probe)
    assert isinstance(df, pl.DataFrame)
    n = df.height
    mastered = int(df.get_column("match").sum()) if n else 0
    ppl = df.filter(_finite_ppl()).get_column("ppl")
    reasons = Counter(df.filter(~pl.col("match")).get_column("match_reason").to_list())
    thr = hppl_threshold(df)

    def stat(s: pl.Series, fn: str) -> float | None:
        return None if s.len() == 0 else float(getattr(s, fn)())

    return {
        "n": n,
        "mastered": mastered,
        "mismatch": n - mastered,
        "mastery_rate": mastered / n if n else 0.0,
        "parse_failures": int(df.get_column("parse_error").is_not_null().sum()),
        "mismatch_reasons": dict(sorted(reasons.items())),
        "ppl_mean": stat(ppl, "mean"),
        "ppl_median": stat(ppl, "median"),
        "ppl_max": stat(ppl, "max"),
        "mean_tokens": float(df.get_column("n_tokens").mean()) if n else 0.0,  # type: ignore[arg-type]
        "hppl": int(df.get_column("hppl").sum()) if n else 0,
        "hppl_threshold": thr,
    }
