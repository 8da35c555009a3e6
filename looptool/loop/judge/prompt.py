"""The judge's prompt as readable text, never raw chat-template tokens (DESIGN §5): tools,
conversation, date and the two responses shown as "A" and "B" in a given order.
"""

from __future__ import annotations

from looptool.core.render import dump_json, render_conversation, render_tools
from looptool.core.types import Label
from looptool.loop.judge.types import Item
from looptool.prompts import load_prompt


def render_response(label: Label | None, raw: str) -> str:
    if label is None:
        return f"(not valid function-call syntax)\n{raw[:2000]}"
    if label.calls:
        return "Function call(s):\n" + "\n".join(dump_json(c.to_json()) for c in label.calls)
    return f"No function call. Text reply:\n{label.text or ''}"


def judge_prompt(item: Item, order: str, date: str, instructions: str) -> list[dict]:
    label_txt = render_response(item.sample.label, "")
    pred_txt = render_response(item.prediction, item.raw_text)
    a, b = (label_txt, pred_txt) if order == "label_first" else (pred_txt, label_txt)
    user = load_prompt("judge_user").format(
        date=date,
        tools=render_tools(item.sample.tools),
        conversation=render_conversation(item.sample.context),
        response_a=a,
        response_b=b,
        instructions=instructions.strip(),
    )
    return [
        {"role": "system", "content": load_prompt("judge_system").strip()},
        {"role": "user", "content": user},
    ]
