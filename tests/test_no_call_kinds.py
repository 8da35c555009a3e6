"""No-call kinds: a label carries the kind its sample has (seed act, import plan, relabel);
a prediction's kind is read from what the reply does (asks for information vs declines)."""

from __future__ import annotations

import json

import pytest

from looptool.core.match import match_strict, no_call_kind
from looptool.core.tables import label_from_json, sample_from_row, sample_kind, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolSpec

CLARIFY = [
    "Which city do you mean?",
    "Could you tell me the city name? I need it to continue.",
    "Please tell me which city you mean.",
    "Please provide the departure date.",
    "What date would you like to depart？",
    "请问您要查询哪个城市的天气？",
    "Sure! Before I book, what time works for you?",
    "I need one more detail: the order number. Could you provide it?",
    "To convert the amount I'll need to know the target currency.",
    "Do you mean Paris, France or Paris, Texas?",
    "Would you like the temperature in Celsius or Fahrenheit?",
    "Happy to help. What recipient email should I use?",
    "Happy to help, what recipient email should I use?",
    "Can you give me the account ID first?",
    "Let me know which size you want and I'll place the order.",
    "Sorry, which account did you mean?",
    "Unfortunately I can't look that up without the order number. Could you share it?",
    "Got it. And how many guests will there be?",
    "Could you specify the date range for the report.",
    "Kindly provide your booking reference.",
    "Please let me know the recipient's phone number.",
    "I need your ZIP code to find nearby stores.",
    "Just to confirm: is the meeting on Tuesday?",
    "Tell me the title of the song and I'll look it up.",
    "Which one: the checking or the savings account?",
    "What's the name of the file you want to delete",
    "请提供您的订单号。",
    "ご希望の日付を教えてください。",
    "¿Para qué ciudad quieres el pronóstico?",
    "Shall I use your default shipping address?",
    "Is this for a one-way or a round trip?",
    "May I have your email address?",
    "Before I do that, what is the start date?",
    "One thing is missing: what is the amount?",
    "I'd be glad to check. Which airport are you flying from?",
]

IRRELEVANT = [
    "Sorry, I cannot book flights. Is there anything else I can help with?",
    "I can only look up the weather.",
    "Sorry, none of my tools can do that. I can help with weather, news.",
    "I can't help with that request with the tools I have; they cover currency conversion.",
    "That is outside what I can do here. My tools handle ratings.",
    "Unfortunately I have no tool for that. I can assist with maps.",
    "I'm afraid I don't have access to your calendar.",
    "I'm unable to place phone calls. Can I help you with something else?",
    "I don't have a tool for booking hotels. Would you like me to check the weather there instead?",
    "Booking flights isn't something I can do with the available functions. How else can I help?",
    "I can't provide medical advice. Please consult a doctor.",
    "None of the available functions can translate text, sorry!",
    "抱歉，我无法预订机票。还有什么可以帮您的吗？",
    "申し訳ありませんが、その操作はできません。",
    "Lo siento, no puedo reservar vuelos. ¿Hay algo más en lo que pueda ayudarte?",
    "Hello! How can I help you today?",
    "I can't open links like https://example.com/page?id=7, sorry.",
    "Please note that I can only check stock prices.",
    "That request is beyond my capabilities. Feel free to ask about the weather!",
    "Let me know if there's anything else you need.",
    "Please let me know if you need anything else.",
    "The available tools cannot send emails. You could try your mail app instead.",
    "I'm sorry, but there's no function for deleting accounts. Would you like help with something else?",
    "Translation isn't supported here.",
    "Leider kann ich keine Flüge buchen.",
    "Sorry, I can't do that. What else can I do for you?",
    "I cannot process payments, as that requires a payments tool, which I do not have.",
    "I would need a flight booking tool to do that, and none is available.",
    "Sorry, that's not possible with my current tools. Do you want me to look up the store's "
    "opening hours instead?",
    "Your request is outside the scope of the functions I can use.",
    "What I can do is check the weather for you.",
    "I'm a weather assistant, so stock quotes are out of scope for me.",
    "",
]


@pytest.mark.parametrize("text", CLARIFY)
def test_a_reply_that_asks_for_information_is_clarify(text):
    assert no_call_kind(text) == "clarify"


@pytest.mark.parametrize("text", IRRELEVANT)
def test_a_reply_that_declines_or_asks_nothing_is_irrelevant(text):
    assert no_call_kind(text) == "irrelevant"


def test_the_table_is_large_enough():
    assert len(CLARIFY) + len(IRRELEVANT) >= 40 and min(len(CLARIFY), len(IRRELEVANT)) >= 20


TOOLS = [ToolSpec.from_any({"name": "get_weather", "parameters": {"type": "object"}})]
CTX = [Message(role="user", content="Book me a flight to Rome.")]


def test_a_label_carries_its_kind_and_matching_uses_it():
    """The label's kind decides what a prediction must do, not the label's wording."""
    polite = Label(text="Please tell me which city you mean.", kind="clarify")
    assert match_strict("Which city do you mean?", polite).ok
    res = match_strict("Sorry, I can only look up the weather.", polite)
    assert (res.ok, res.reason, res.detail) == (
        False,
        "answer_kind",
        {"expected": "clarify", "got": "irrelevant"},
    )
    decline = Label(
        text="Sorry, I cannot book flights. Is there anything else I can help with?",
        kind="irrelevant",
    )
    assert match_strict("I can't book flights, sorry.", decline).ok
    assert not match_strict("Which airline would you like?", decline).ok
    # the kind is stored with the label and survives a round trip
    assert polite.to_json() == {"calls": [], "text": polite.text, "kind": "clarify"}
    assert label_from_json(json.dumps(polite.to_json())) == polite
    # a label written without a kind reads its text; a call label has no no-call kind
    assert Label(text="Please provide the date.").kind == "clarify"
    assert Label.model_validate({"calls": [], "text": "No tool fits."}).kind == "irrelevant"
    with pytest.raises(ValueError, match="no-call kind"):
        Label.model_validate(
            {"calls": [{"name": "get_weather", "arguments": {}}], "kind": "clarify"}
        )


def test_the_sample_kind_is_the_labels_and_a_stored_row_keeps_it():
    s = Sample(tools=TOOLS, context=CTX, label=Label(text="Hmm, Rome.", kind="clarify"))
    row = sample_to_row(s)
    assert row["kind"] == "clarify" and sample_kind(s) == "clarify"
    assert json.loads(row["label"])["kind"] == "clarify"
    assert sample_from_row(row).label.kind == "clarify"
    # a row stored before labels carried a kind: the row's kind column is the label's kind
    legacy = {**row, "label": json.dumps({"calls": [], "text": "Hmm, Rome."})}
    assert sample_from_row(legacy).label.kind == "clarify"
    assert label_from_json(legacy["label"]).kind == "irrelevant"  # no row: the text is read


def _dialogue(texts_acts: list[tuple[str, str]]) -> dict:
    """A DIALOGUES row: one user request, then per (text, act) an assistant text step."""
    messages, acts = [], []
    for k, (text, act) in enumerate(texts_acts):
        messages += [
            Message(role="user", content=f"Request {k}: book me a flight."),
            Message(role="assistant", content=text),
        ]
        acts += [None, {"turn": k, "step": None, "expect": act, "act": act}]
    return {
        "dialogue_id": "d0",
        "index": 0,
        "tools": json.dumps([t.to_json() for t in TOOLS]),
        "messages": json.dumps([m.to_json() for m in messages]),
        "acts": json.dumps(acts),
    }


def test_seed_samples_carry_their_act_as_kind():
    from looptool.seed.samples import build_samples

    row = _dialogue(
        [
            ("Please tell me which city you mean.", "clarify"),
            ("Sorry, I cannot book flights. Is there anything else I can help with?", "irrelevant"),
            ("Sorry, I can only look up the weather.", "clarify"),  # says no, asks nothing
        ]
    )
    train, _, rejects, acts = build_samples([row], 0.0, 0, {"clarify", "irrelevant"})
    assert [r["kind"] for r in train] == ["clarify", "irrelevant"]
    assert [json.loads(r["label"])["kind"] for r in train] == ["clarify", "irrelevant"]
    assert acts == {"clarify": 1, "irrelevant": 1}
    (rej,) = rejects
    assert (rej["item_id"], rej["tier"]) == ("d0@5", "rules")
    assert "a clarify answer must ask the user for information" in rej["reason"]


def test_an_edde_child_keeps_the_kind_its_label_names():
    from looptool.loop.expand.parse import parse_child

    def child(label: dict) -> str:
        return json.dumps({"context": [{"role": "user", "content": "Weather?"}], "label": label})

    kept = parse_child(child({"calls": [], "text": "Hmm, Rome.", "kind": "clarify"}), TOOLS)
    assert kept.label.kind == "clarify"  # the template generator keeps the seed's label
    read = parse_child(child({"calls": [], "text": "Please tell me which city."}), TOOLS)
    assert read.label.kind == "clarify"  # an LLM child without a kind: its text is read
    with pytest.raises(ValueError, match="label.kind 'answer'"):
        parse_child(child({"calls": [], "text": "Done.", "kind": "answer"}), TOOLS)
