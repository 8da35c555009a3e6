"""Programmatic tool-use chats: the tiny tokenizer's training text
(looptool.loop.tiny_model) and the requests of `looptool engines smoke` (engines/smoke.py).
"""

from __future__ import annotations

import json
import random

from looptool.core.codec import render_calls
from looptool.core.types import ToolCall

_VERBS = "get search find create update delete list book cancel send convert calculate check set fetch translate schedule order track compare".split()
_NOUNS = (
    "weather flight hotel user order invoice ticket stock price recipe movie song playlist "
    "email message event meeting route distance currency rate account balance file folder "
    "product review restaurant table reservation calendar task note contact address city "
    "country temperature forecast news article image video payment shipment package"
).split()
_PARAMS = (
    "city date location query limit unit currency amount user_id order_id name email "
    "start_date end_date count language format category max_results sort_by include_details "
    "latitude longitude radius price min_price max_price title description tags priority "
    "timezone from_currency to_currency origin destination passengers cuisine rating"
).split()
_WORDS = (
    "please can you I want to need the a for in on at with from and what is how much "
    "tomorrow today next week Paris London Tokyo New York Berlin Madrid Rome Sydney cheap "
    "best nearby open now my last show me tell about find book check send latest two three "
    "morning evening USD EUR JPY GBP celsius fahrenheit kilometers miles help thanks sure "
    "sorry which one more details available options here result found error not"
).split()
_TYPES = ["string", "integer", "number", "boolean", "array"]


def _value(rng: random.Random, typ: str):
    if typ == "integer":
        return rng.randint(0, 5000)
    if typ == "number":
        return round(rng.uniform(-200, 2000), rng.randint(1, 3))
    if typ == "boolean":
        return rng.random() < 0.5
    if typ == "array":
        return [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _tool(rng: random.Random) -> dict:
    name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    params = rng.sample(_PARAMS, rng.randint(1, 4))
    props = {}
    for p in params:
        typ = rng.choice(_TYPES)
        prop: dict = {"type": typ, "description": f"The {p.replace('_', ' ')}"}
        if typ == "array":
            prop["items"] = {"type": "string"}
        props[p] = prop
    required = params[: rng.randint(1, len(params))]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.split('_')[0].capitalize()} the {name.split('_')[1]}.",
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))).capitalize()


def synthetic_chats(n: int, seed: int) -> list[tuple[list[dict], list[dict]]]:
    """``n`` programmatic (messages, tools) tool-use chats: the tokenizer's training text."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        tools = [_tool(rng) for _ in range(rng.randint(1, 3))]
        messages: list[dict] = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": _sentence(rng, 4, 10) + "."})
        messages.append({"role": "user", "content": _sentence(rng, 4, 14) + "?"})
        for _turn in range(rng.randint(1, 2)):
            calls = []
            for t in rng.sample(tools, rng.randint(1, len(tools))):
                fn = t["function"]
                props = fn["parameters"]["properties"]
                args = {k: _value(rng, props[k]["type"]) for k in props if rng.random() < 0.8}
                calls.append(ToolCall(name=fn["name"], arguments=args))
            think = f"<think>\n{_sentence(rng, 3, 12)}.\n</think>\n\n" if rng.random() < 0.5 else ""
            messages.append({"role": "assistant", "content": think + render_calls(calls)})
            for c in calls:
                result = {"status": "ok", "result": _value(rng, rng.choice(_TYPES))}
                messages.append({"role": "tool", "name": c.name, "content": json.dumps(result)})
        messages.append({"role": "assistant", "content": _sentence(rng, 4, 16) + "."})
        chats.append((messages, tools))
    return chats
