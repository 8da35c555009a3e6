"""Seeded draws of the dialogues to simulate: each one's tools, turn kinds, off-topic asks.

:func:`draw_dialogues` picks, per dialogue, a tool subset of the API pool (mostly one
domain, a chain of two tools preferred, at most one API per context leaf, sometimes a
distractor from another domain) and the kinds of its turns; the simulation
(:mod:`looptool.seed.agents`) runs them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from looptool.core.types import ToolSpec, content_hash
from looptool.seed.plan import find_chains
from looptool.seed.values import gen_value, say_value


@dataclass
class DialogueSpec:
    """Everything fixed before simulation: the tool subset, turn kinds, off-topic asks."""

    index: int
    dialogue_id: str
    domain: str
    apis: list[dict]  # API pool rows of the dialogue's tools
    kinds: list[str]
    offtopic: list[str]
    seed: int

    @property
    def tools(self) -> list[ToolSpec]:
        return [ToolSpec.model_validate(json.loads(a["spec"])) for a in self.apis]

    def entries(self) -> list[dict]:
        return [
            {
                "spec": json.loads(a["spec"]),
                "returns": json.loads(a["returns"]) if a.get("returns") else None,
                "hints": json.loads(a["hints"]) if a.get("hints") else None,
            }
            for a in self.apis
        ]


def _draw_kinds(
    rng: random.Random, turns: tuple[int, int], mix: dict[str, float], can_clarify: bool
) -> list[str]:
    names = [k for k, w in sorted(mix.items()) if w > 0 and (k != "clarify" or can_clarify)]
    weights = [mix[k] for k in names]
    return rng.choices(names, weights=weights, k=rng.randint(*turns))


def _offtopic(rng: random.Random, apis: list[dict], n: int = 3) -> list[str]:
    out = []
    for a in rng.sample(apis, min(n, len(apis))):
        hints = json.loads(a["hints"]) if a.get("hints") else {}
        spec = json.loads(a["spec"])
        props = spec.get("parameters", {}).get("properties", {})
        ask = rng.choice(hints.get("ask") or [spec.get("description", "help me")])
        phrase = ""
        if props:
            name = rng.choice(sorted(props))
            value = gen_value(props[name], hints.get("params", {}).get(name), rng)
            phrase = " " + say_value(name, value, hints.get("params", {}).get(name))
        out.append(f"Can you {ask}{phrase}?")
    return out


def draw_dialogues(
    apis: list[dict],
    n: int,
    seed: int,
    tools_per_dialogue: tuple[int, int],
    turns: tuple[int, int],
    mix: dict[str, float],
    distractor_rate: float,
    chain_rate: float = 0.6,
) -> list[DialogueSpec]:
    """Seeded tool subsets (mostly one domain, chains preferred) and turn kinds."""
    by_name = {a["name"]: a for a in apis}
    by_domain: dict[str, list[dict]] = {}
    for a in apis:
        by_domain.setdefault(a["domain"], []).append(a)
    domains = sorted(by_domain)
    if not domains:
        return []
    weights = [len(by_domain[d]) for d in domains]
    chains = {}
    for d in domains:
        entries = [
            {
                "spec": json.loads(a["spec"]),
                "returns": json.loads(a["returns"]) if a.get("returns") else None,
            }
            for a in by_domain[d]
        ]
        chains[d] = find_chains(entries)
    out = []
    for i in range(n):
        rng = random.Random(f"seed-dialogue:{seed}:{i}")
        dom = rng.choices(domains, weights=weights)[0]
        pool = by_domain[dom]
        k = min(rng.randint(*tools_per_dialogue), len(pool))
        names: list[str] = []
        if chains[dom] and rng.random() < chain_rate:
            a, _, b, _ = rng.choice(chains[dom])
            names = [a, b][:k] if k >= 2 else [a]
        # At most one API per context leaf: two variants of one capability in a tool set
        # would make either call a correct label.
        leaves = {by_name[nm].get("context_path") or nm for nm in names}
        rest = [a for a in pool if a["name"] not in names]
        rng.shuffle(rest)
        for a in rest:
            if len(names) >= k:
                break
            leaf = a.get("context_path") or a["name"]
            if leaf not in leaves:
                names.append(a["name"])
                leaves.add(leaf)
        picked = [a for a in pool if a["name"] in names]
        others = [d for d in domains if d != dom]
        if others and rng.random() < distractor_rate:  # a distractor from another domain
            picked.append(rng.choice(by_domain[rng.choice(others)]))
        rng.shuffle(picked)
        used = {a["domain"] for a in picked}
        far = [a for d in domains if d not in used for a in by_domain[d]]
        can_clarify = any(_clarifiable(a) for a in picked)
        kinds = _draw_kinds(rng, turns, mix, can_clarify)
        offtopic = _offtopic(rng, far) if far and "irrelevant" in kinds else []
        if not offtopic and "irrelevant" in kinds:
            offtopic = ["Can you tell me a joke about penguins?"]
        did = "dlg-" + content_hash(
            {"seed": seed, "i": i, "tools": sorted(a["api_id"] for a in picked), "kinds": kinds}, 12
        )
        out.append(DialogueSpec(i, did, dom, picked, kinds, offtopic, seed))
    return out


def _clarifiable(api: dict) -> bool:
    params = json.loads(api["spec"]).get("parameters", {})
    props = params.get("properties", {})
    return any(props.get(r, {}).get("type") != "boolean" for r in params.get("required", []))
