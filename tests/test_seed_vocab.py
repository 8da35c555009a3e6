"""The template generator's value vocabularies and phrasings."""

from __future__ import annotations

import random

from looptool.seed.values import SAY_FORMS, appears_in, gen_value, say_value
from looptool.seed.vocab import more_strings


def test_fresh_string_values_keep_the_fields_kind():
    rng = random.Random(0)
    codes = {more_strings("flight_number", ["AX123", "SB480"], rng) for _ in range(50)}
    assert len(codes) > 40 and all(len(c) == 5 and c[:2].isalpha() for c in codes)
    mails = {more_strings("sender", ["a@x.example", "b@y.example"], rng) for _ in range(20)}
    assert all("@" in m for m in mails) and len(mails) > 10
    assert more_strings("month", ["2026-01", "2026-04"], rng) is None  # no date shapes
    assert more_strings("hotel_name", ["Casa Azul"], rng) is None  # not a person
    assert " " in more_strings("guest_name", ["Ana Silva"], rng)
    hint = {"type": "string", "name": "city", "examples": ["Lisbon", "Kyoto"]}
    values = {gen_value({"type": "string"}, hint, rng) for _ in range(200)}
    assert {"Lisbon", "Kyoto"} <= values and len(values) > 15
    assert all(appears_in(v, f"a hotel in {v} please") for v in values)


def test_varied_phrasings_keep_every_value_literal():
    rng = random.Random(1)
    phrases = {say_value("max_price", 120, None, rng) for _ in range(100)}
    assert len(phrases) == len(SAY_FORMS) and all(appears_in(120, p) for p in phrases)
    assert say_value("max_price", 120, None) == "with max price 120"  # without rng: canonical
    hinted = {say_value("city", "Oslo", {"say": "in {v}"}, rng) for _ in range(100)}
    assert "in Oslo" in hinted and len(hinted) > 3
    assert {say_value("refundable", False, None, rng) for _ in range(50)} >= {"without refundable"}
