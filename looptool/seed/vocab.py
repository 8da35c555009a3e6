"""Value vocabularies of the template generator, so string values are not drawn from the
tree's 3-5 examples alone.

:func:`more_strings` gives a string value for a tree field from a generator matched to
the field: a value shaped like the field's code-like examples (flight numbers, tickers,
IBANs, PINs), an e-mail address or handle, or a pool by field name (people, cities,
places, titles, search queries, notes, ...). Every value is plain text a user can write
literally (the template intent check looks for it in the conversation).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

FIRST = (
    "Ana Kenji Priya Tom Lena Omar Sofia Mateo Aisha Lucas Mei Jonas Nadia Diego Hana Felix "
    "Zara Ivan Leila Marco Yuki Tariq Elena Samir Chloe Ravi Ingrid Kofi Amara Pablo"
).split()
LAST = (
    "Silva Mori Nair Becker Ortiz Haddad Rossi Novak Okafor Lindqvist Tanaka Dubois Khan "
    "Costa Schmidt Park Mensah Petrov Alvarez Sato Moreau Ibrahim Walsh Kowalski Reyes Berg"
).split()
CITIES = (
    "Lisbon|Kyoto|Denver|Oslo|Nairobi|Lima|Hanoi|Perth|Austin|Leeds|Lyon|Pune|Delhi|Paris|"
    "Seoul|Porto|Osaka|Zurich|Cusco|Accra|Bogota|Krakow|Tallinn|Dublin|Valencia|Quebec|"
    "Cape Town|Mexico City|Buenos Aires|Reykjavik|Marrakesh|Hobart|Bergen|Tbilisi|Sapporo|"
    "Cordoba|Ghent|Trieste|Halifax|Wellington"
).split("|")
PLACES = (
    "Union Square|Alfama|Shibuya Station|Old Town|Central Park|Harbor Front|Market Hall|"
    "City Library|North Pier|Museum Quarter|Riverside Mall|Grand Station|Botanic Garden|"
    "Castle Hill|Main Square|Airport Terminal 2|Stadium Gate B|Westfield Plaza"
).split("|")
ADJ = (
    "silent red quiet golden hidden northern bright long lost wild velvet paper hollow "
    "distant electric amber winter secret crooked gentle"
).split()
NOUN = (
    "harbor orbit field river garden signal lantern valley road compass atlas meadow "
    "engine kingdom shore archive canyon echo forest mirror"
).split()
PRODUCTS = (
    "running shoes|desk lamp|coffee grinder|rain jacket|yoga mat|water bottle|phone case|"
    "hiking boots|standing desk|air fryer|noise cancelling headphones|backpack|wool socks|"
    "electric kettle|office chair|bike helmet|sunglasses|cast iron pan|travel adapter|"
    "mechanical keyboard|linen shirt|tea set|blender|camping tent"
).split("|")
TOPICS = (
    "sleep science|startup stories|ancient rome|photosynthesis|world capitals|fractions|"
    "climate change|jazz history|machine learning|volcanoes|chess openings|bird migration|"
    "the french revolution|black holes|bread baking|marathon training|ocean currents|"
    "renaissance art|personal finance|urban gardening"
).split("|")
PHRASES = (
    "team lunch|bus pass|pharmacy|running late|call me later|happy birthday|see you at noon|"
    "thanks for your help|groceries for the week|birthday gift|schedule conflict|"
    "feeling better|looks amazing|congrats on the launch|meeting moved to friday|"
    "new address details|weekend plans|reminder about the invoice|school trip fee|"
    "gym membership|dinner with friends|concert tickets|car repair|book club"
).split("|")
TASKS = (
    "renew passport|send invoice|buy paint|book dentist|water the plants|file taxes|"
    "call the plumber|return library books|update resume|plan the trip|pay rent|"
    "order printer ink|fix the bike|clean the garage"
).split("|")
WORDS = (
    "travel launch running home work errands gym standup medication garden music family "
    "finance health study kitchen weekend project reading fitness"
).split()
COLORS = "warm white|soft blue|amber|deep red|mint green|sunset orange|lavender|cool white".split(
    "|"
)
COUNTRIES = "us gb de in br fr jp es it ca mx kr nl se pt za au ng".split()
DOMAINS = ("example.com", "mail.example", "corp.example", "school.example")


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(ADJ).title()} {rng.choice(NOUN).title()}"


def _pool(items: list[str]) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(items)


PERSON_ROLES = {"guest", "customer", "passenger", "recipient", "contact", "student", "patient"}
# canonical field-name word -> generator (the last word of the name decides first)
BY_NAME: dict[str, Callable[[random.Random], str]] = {
    "city": _pool(CITIES),
    "location": _pool(CITIES + PLACES),
    "near": _pool(PLACES),
    "address": lambda rng: f"{rng.randint(1, 240)} {rng.choice(NOUN).title()} Street",
    "station": _pool(CITIES),
    "origin": _pool(PLACES),
    "destination": _pool(PLACES),
    "author": lambda rng: f"{rng.choice(FIRST)[0]}. {rng.choice(LAST)}",
    "artist": lambda rng: rng.choice([_person(rng), f"The {rng.choice(NOUN).title()}s"]),
    "title": lambda rng: rng.choice([_title(rng), rng.choice(TASKS).capitalize()]),
    "subject": _pool(TOPICS),
    "topic": _pool(TOPICS),
    "query": lambda rng: rng.choice([rng.choice(PRODUCTS), rng.choice(TOPICS)]),
    "note": _pool(PHRASES),
    "text": _pool(PHRASES),
    "comment": _pool(PHRASES),
    "reason": _pool(PHRASES),
    "content": _pool(PHRASES),
    "reference": lambda rng: f"{rng.choice(PHRASES)} {rng.randint(2, 999)}",
    "tag": _pool(WORDS),
    "label": _pool(WORDS),
    "hashtag": _pool(WORDS),
    "color": _pool(COLORS),
    "country": _pool(COUNTRIES),
    "food": _pool(
        "oats|lentils|salmon|spinach|greek yogurt|quinoa|chickpeas|blueberries".split("|")
    ),
    "brand": lambda rng: rng.choice(NOUN).title() + rng.choice(["ly", "co", "io", "wise", ""]),
}

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9 \-]*$")
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}")


def _shaped(example: str, rng: random.Random) -> str:
    """A value of the same shape: each letter / digit replaced by a random one."""
    return "".join(
        rng.choice(string.ascii_uppercase)
        if ch.isalpha()
        else rng.choice(string.digits)
        if ch.isdigit()
        else ch
        for ch in example
    )


def more_strings(field: str, examples: list[str], rng: random.Random) -> str | None:
    """A fresh value for a string field with these examples, or None when no generator
    fits (the caller keeps to the examples)."""
    if examples and all(_CODE.match(e) and not _DATE_LIKE.match(e) for e in examples):
        return _shaped(rng.choice(examples), rng)
    if examples and all(re.match(r"^[^@\s]+@[^@\s]+\.\w+$", e) for e in examples):
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@{rng.choice(DOMAINS)}"
    if examples and all(e.startswith("@") for e in examples):
        return f"@{rng.choice(FIRST).lower()}_{rng.choice(LAST).lower()[:3]}"
    words = field.lower().split("_")
    if words[-1] == "name" and (len(words) == 1 or words[-2] in PERSON_ROLES):
        return _person(rng)
    for w in reversed(words):
        if w in BY_NAME:
            return BY_NAME[w](rng)
    return None
