"""The seed stages, library side: each reads its inputs, runs, writes outputs atomically.

    seed_apis      trees (+ imported tool files) -> apis.parquet, api_rejects.parquet
    seed_dialogues apis -> simulated.parquet, simulation_rejects.parquet
    seed_verify    simulated -> dialogues.parquet (verified), dialogue_rejects.parquet
                   (simulation rejects carried over + both verification tiers)
    seed_samples   dialogues -> samples.parquet (D_seed train), heldout.parquet,
                   label_noise.parquet, sample_rejects.parquet, metrics.json
                   (:mod:`looptool.seed.stage_samples`: it runs no engine)

Every stage also writes ``<name>_metrics.json`` (``metrics.json`` for samples). Metrics
hold counts only (no wall-clock times) so a rerun reproduces them byte for byte; with
LLM backends the request-cache hit/miss counters are reported under ``engines``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from looptool.core.tables import (
    APIS,
    DIALOGUES,
    REJECTS,
    rows_to_table,
)
from looptool.core.types import Message, ToolSpec, canonical_json
from looptool.engines import EngineError, RequestCache, make_engine
from looptool.engines.backends.template import TemplateEngine
from looptool.engines.base import Engine, Failed, SamplingParams
from looptool.engines.failures import ENGINE_FAILED
from looptool.engines.placement import apply_gpus, stage_specs
from looptool.params import Params, ParamsError, load_params
from looptool.seed.agents import AgentSet, SimConfig, plan_json, simulate
from looptool.seed.apis import api_request, build_pool, draw_apis
from looptool.seed.dialogue_draw import draw_dialogues
from looptool.seed.imports import ToolImportError, import_into, import_origin
from looptool.seed.noise import NoiseError
from looptool.seed.roles import AGENTS
from looptool.seed.stage_data import (
    plan_outcomes,
    read_rows,
    reject_counts,
    reject_summary,
    top_reasons,
    value_counts,
)
from looptool.seed.trees import TreeError, load_trees
from looptool.seed.verify import chain_problems, judge_steps, rule_problems, steps_to_check
from looptool.store.io import write_json_atomic, write_parquet_atomic
from looptool.store.stream import parquet_rows_atomic

KNOWN_ERRORS = (TreeError, ToolImportError, ParamsError, EngineError, NoiseError, FileNotFoundError)


class Engines:
    """Engines by reference ("template" or an `engines:` role), built once, one cache."""

    def __init__(self, params: Params):
        self.params = params
        self._engines: dict[str, Engine] = {}
        self._cache: RequestCache | None = None

    def get(self, ref: str) -> Engine:
        if ref not in self._engines:
            if ref == "template":
                self._engines[ref] = TemplateEngine()
            else:
                spec = self.params.engines.role(ref)
                cache = None
                if spec.backend != "template" and self.params.engines.use_cache:
                    if self._cache is None:
                        self._cache = RequestCache.open(self.params.project.cache_dir)
                    cache = self._cache
                self._engines[ref] = make_engine(spec, ref, cache)
        return self._engines[ref]

    def describe(self, ref: str) -> str:
        e = self.get(ref)
        return f"{e.backend}:{e.model_id}"

    def stats(self) -> dict[str, Any]:
        out = {}
        for ref, e in sorted(self._engines.items()):
            entry: dict[str, Any] = {"backend": e.backend, "model": e.model_id}
            if hasattr(e, "stats"):
                entry.update(e.stats())
            out[ref] = entry
        return out

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


# --- seed_apis ---------------------------------------------------------------------------


def run_apis(params: Params, out_dir: Path) -> dict:
    """Draw from both trees, synthesize + validate APIs, import tool files -> the API pool."""
    sp = params.seed
    trees = load_trees(sp.trees.context, sp.trees.constraint)
    engines = Engines(params)
    try:
        gen = engines.get(sp.apis.engine)
        draws = draw_apis(trees, sp.apis.n_draws, params.project.seed)
        sampling = SamplingParams(
            max_tokens=sp.apis.max_tokens,
            temperature=0.0 if gen.backend == "template" else sp.apis.temperature,
            seed=params.project.seed,
        )
        import looptool.seed.templates  # noqa: F401  (registers the template tasks)

        tmpl = gen.backend == "template"
        requests = [api_request(d, trees, tmpl, sampling, sp.apis.enable_thinking) for d in draws]
        texts = [
            g if isinstance(g, Failed) else g[0].text
            for g in (gen.generate(requests) if requests else [])
        ]
        taken: set[str] = set()
        rows, rejects = build_pool(draws, texts, trees, taken)
        n_synth = len(rows)
        # imported files, streamed: tools join the pool, dialogues go to seed_verify
        # (imported.parquet); memory stays flat in the files' sizes
        by_file: dict[str, dict] = {}
        with (
            parquet_rows_atomic(out_dir / "apis.parquet", APIS) as apis,
            parquet_rows_atomic(out_dir / "api_rejects.parquet", REJECTS) as rejected,
            parquet_rows_atomic(out_dir / "imported.parquet", DIALOGUES) as imported,
        ):
            apis.add_rows(rows)
            rejected.add_rows(rejects)
            for imp in sp.apis.imports:
                by_file[imp.path] = import_into(imp, taken, apis, rejected, imported)
        by_tier, top_reject_reasons = reject_summary(out_dir / "api_rejects.parquet")
        metrics = {
            "draws": len(draws),
            "context_leaves": len(trees.context_leaves),
            "constraint_paths": len(trees.constraint_leaves),
            "apis": apis.rows,
            "synthesized": n_synth,
            "imported": apis.rows - n_synth,
            "imported_dialogues": imported.rows,
            "imports": by_file,
            "rejected": rejected.rows,
            "rejected_by_tier": by_tier,
            "top_reject_reasons": top_reject_reasons,
            "apis_by_domain": value_counts(out_dir / "apis.parquet", "domain"),
            "engines": engines.stats(),
        }
        write_json_atomic(out_dir / "apis_metrics.json", metrics)
        return metrics
    finally:
        engines.close()


# --- seed_dialogues ------------------------------------------------------------------------


def run_dialogues(params: Params, out_dir: Path) -> dict:
    """Simulate planner/user/assistant/tool dialogues over seeded tool subsets of the pool."""
    sp = params.seed.dialogues
    apis = read_rows(out_dir / "apis.parquet")
    engines = Engines(params)
    try:
        agent_engines = {a: engines.get(getattr(sp.agents, a)) for a in AGENTS}
        cfg = SimConfig(
            tool_error_rate=sp.tool_error_rate,
            slip_rate=sp.template_slip_rate,
            max_messages=sp.max_messages,
            max_tokens={a: getattr(sp.max_tokens, a) for a in AGENTS},
            temperature=sp.temperature,
            chat_template_kwargs={"enable_thinking": sp.enable_thinking},
        )
        specs = draw_dialogues(
            apis,
            sp.n_dialogues,
            params.project.seed,
            tuple(sp.tools_per_dialogue),
            tuple(sp.turns),
            dict(sp.turn_mix),
            sp.distractor_rate,
            sp.chain_rate,
        )
        results = simulate(specs, AgentSet(agent_engines, cfg))
        agents_json = canonical_json({a: engines.describe(getattr(sp.agents, a)) for a in AGENTS})
        rows, rejects = [], []
        for d, res in zip(specs, results, strict=True):
            provenance = [
                {
                    "name": a["name"],
                    "api_id": a["api_id"],
                    "source": a["source"],
                    "context_path": a.get("context_path"),
                    "constraint_path": a.get("constraint_path"),
                    "origin_ref": a.get("origin_ref"),
                    "returns": json.loads(a["returns"]) if a.get("returns") else None,
                }
                for a in d.apis
            ]
            tools_json = canonical_json([t.to_json() for t in d.tools])
            if "reject" in res:
                tier, reason, payload = res["reject"]
                rejects.append(
                    {
                        "stage": "seed_dialogues",
                        "item_id": d.dialogue_id,
                        "tier": tier,
                        "reason": reason,
                        "payload": canonical_json(
                            {"tools": json.loads(tools_json), "kinds": d.kinds, **payload}
                        ),
                    }
                )
                continue
            msgs: list[Message] = res["messages"]
            rows.append(
                {
                    "dialogue_id": d.dialogue_id,
                    "index": d.index,
                    "domain": d.domain,
                    "tools": tools_json,
                    "provenance": canonical_json(provenance),
                    "turn_kinds": canonical_json([t.kind for t in res["plan"].turns]),
                    "plan": plan_json(res["plan"]),
                    "messages": canonical_json([m.to_json() for m in msgs]),
                    "acts": canonical_json(res["acts"]),
                    "n_messages": len(msgs),
                    "n_calls": sum(len(m.tool_calls) for m in msgs),
                    "agents": agents_json,
                    "verification": None,
                }
            )
        write_parquet_atomic(out_dir / "simulated.parquet", rows_to_table(rows, DIALOGUES))
        write_parquet_atomic(
            out_dir / "simulation_rejects.parquet", rows_to_table(rejects, REJECTS)
        )
        kinds = Counter(k for d in specs for k in d.kinds)
        metrics = {
            "dialogues_planned": len(specs),
            "simulated": len(rows),
            "rejected": len(rejects),
            "rejected_by_tier": reject_counts(rejects),
            "top_reject_reasons": top_reasons(rejects),
            "turn_kinds": dict(sorted(kinds.items())),
            "plans": plan_outcomes(len(specs), rejects),
            "messages": sum(r["n_messages"] for r in rows),
            "calls": sum(r["n_calls"] for r in rows),
            "engines": engines.stats(),
        }
        write_json_atomic(out_dir / "simulation_metrics.json", metrics)
        return metrics
    finally:
        engines.close()


# --- seed_verify ---------------------------------------------------------------------------


def run_verify(params: Params, out_dir: Path) -> dict:
    """Rule tier, then the intent tier (LLM judge or template check) -> verified dialogues."""
    sp = params.seed
    sim = read_rows(out_dir / "simulated.parquet")
    # imported dialogues go through the same tiers, numbered after the simulated ones
    first = max((d["index"] for d in sim), default=-1) + 1
    imported = [dict(d, index=first + d["index"]) for d in read_rows(out_dir / "imported.parquet")]
    sim += imported
    carried = read_rows(out_dir / "simulation_rejects.parquet")
    rejects: list[dict] = []
    passed: list[dict] = []
    parsed: dict[str, tuple[list[ToolSpec], list[Message], list]] = {}
    for d in sim:
        tools = [ToolSpec.model_validate(t) for t in json.loads(d["tools"])]
        messages = [Message.model_validate(m) for m in json.loads(d["messages"])]
        acts = json.loads(d["acts"])
        returns = {p["name"]: p.get("returns") for p in json.loads(d["provenance"])}
        problems = rule_problems(
            tools, messages, acts, returns, open_end=import_origin(d) is not None
        ) + chain_problems(json.loads(d["plan"]), messages, acts)
        if problems:
            rejects.append(
                {
                    "stage": "seed_verify",
                    "item_id": d["dialogue_id"],
                    "tier": "rules",
                    "reason": "; ".join(problems[:5]),
                    "payload": None,
                }
            )
            continue
        passed.append(d)
        parsed[d["dialogue_id"]] = (tools, messages, acts)
    tier = sp.verify.llm_tier
    engines = Engines(params)
    verdict_counts: Counter[str] = Counter()
    try:
        checked = {"call", "clarify", "irrelevant", *sp.no_call_acts}
        steps = []
        if tier != "off":
            for d in passed:
                tools, messages, acts = parsed[d["dialogue_id"]]
                steps += steps_to_check(
                    d["dialogue_id"], json.loads(d["plan"]), messages, acts, checked
                )
        impl = tier_name = "off"
        results: list[tuple[str, str]] = []
        if tier != "off":
            engine = engines.get(tier)
            impl = (
                "template-intent-check"
                if engine.backend == "template"
                else f"judge:{engines.describe(tier)}"
            )
            tier_name = "intent" if engine.backend == "template" else "llm"
            tools_by = {k: v[0] for k, v in parsed.items()}
            results = judge_steps(steps, engine, tools_by, sp.verify.reasons, sp.verify.max_tokens)
        fails: dict[str, list[str]] = {}
        n_steps: Counter[str] = Counter()
        for step, (verdict, reason) in zip(steps, results, strict=True):
            verdict_counts[verdict] += 1
            n_steps[step.dialogue_id] += 1
            if verdict in ("FAIL", ENGINE_FAILED):
                fails.setdefault(step.dialogue_id, []).append(
                    f"message {step.message_index} ({step.payload['act']}): {reason}"
                )
        verified = []
        for d in passed:
            if d["dialogue_id"] in fails:
                rejects.append(
                    {
                        "stage": "seed_verify",
                        "item_id": d["dialogue_id"],
                        "tier": tier_name,
                        "reason": "; ".join(fails[d["dialogue_id"]][:3]),
                        "payload": None,
                    }
                )
                continue
            info = {
                "rules": "pass",
                "second_tier": impl,
                "steps_checked": n_steps[d["dialogue_id"]],
            }
            verified.append(dict(d, verification=canonical_json(info)))
        all_rejects = carried + sorted(rejects, key=lambda r: r["item_id"])
        write_parquet_atomic(out_dir / "dialogues.parquet", rows_to_table(verified, DIALOGUES))
        write_parquet_atomic(
            out_dir / "dialogue_rejects.parquet", rows_to_table(all_rejects, REJECTS)
        )
        metrics = {
            "simulated": len(sim) - len(imported),
            "imported": len(imported),
            "verified": len(verified),
            "verified_imported": sum(import_origin(d) is not None for d in verified),
            "rejected_rules": sum(r["tier"] == "rules" for r in rejects),
            "rejected_second_tier": sum(r["tier"] != "rules" for r in rejects),
            "rejected_in_simulation": len(carried),
            "second_tier": impl,
            "steps_checked": len(steps),
            "verdicts": dict(sorted(verdict_counts.items())),
            "top_reject_reasons": top_reasons(rejects),
            "engines": engines.stats(),
        }
        write_json_atomic(out_dir / "verify_metrics.json", metrics)
        return metrics
    finally:
        engines.close()


# --- stage entry helper ----------------------------------------------------------------------


def stage_main(name: str, fn: Callable[[Params, Path], dict], argv: list[str] | None = None) -> int:
    """Shared CLI of the stages/seed_*.py entries: --params, --out; clear errors, exit 2."""
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=fn.__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    ap.add_argument("--out", default="data/seed", help="seed data directory (default data/seed)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        apply_gpus(stage_specs(params, name), name)  # before any engine starts CUDA
        metrics = fn(params, Path(args.out))
    except KNOWN_ERRORS as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    brief = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
    print(f"{name}: {json.dumps(brief)} ({time.perf_counter() - t0:.1f}s)")
    return 0
