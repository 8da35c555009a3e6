"""What a text answer without a tool call does: ``clarify`` (it asks the user for missing
information before a call can be made) or ``irrelevant`` (it declines, offers other help,
or asks nothing).

This reads a *prediction*: a label carries the kind its sample already has
(:attr:`looptool.core.types.Label.kind`: the seed act, the import plan, a relabel's
prediction), and only a label written without one falls back on this reading.

The reply is cut into sentences (NFKC first, so full-width "？" is "?"; CJK "。" ends a
sentence; a "?" inside a URL does not) and each is read for what it does:

- **ask**: a question that asks for something (which / what / choice "A or B" / yes-no
  about the task), or a request phrased as an imperative or statement ("Please tell me
  which city you mean.", "Could you specify the date.", "I'll need your ZIP code.",
  "Let me know which size you want", "请提供您的订单号。");
- **offer**: generic help ("Is there anything else I can help with?", "How can I help
  you today?", "Let me know if you need anything else") - a question, yet no request;
- **confirm**: a yes/no question about doing something ("Would you like me to ...?",
  "Shall I ...?", "... instead?");
- **decline**: a refusal or a statement of limits ("Sorry, I cannot ...", "I can only
  ...", "none of my tools ...", "抱歉，我无法 ...").

Any ask makes the reply ``clarify``. Otherwise a decline makes it ``irrelevant`` (a
"would you like me to ... instead?" after a refusal offers an alternative, it does not
ask for an argument); without a decline a confirm question is ``clarify``; anything else
(offers, statements, an empty text) is ``irrelevant``.
"""

from __future__ import annotations

import re
import unicodedata

CLARIFY, IRRELEVANT = "clarify", "irrelevant"

# Sentence ends: . ! ? … followed by a space or the end; CJK 。！ and a "?" followed by a
# CJK character need no space; line breaks. NFKC has already turned ？ ！ into ? !.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_SPLIT = re.compile(rf"(?<=[.!?…؟])\s+|(?<=[。！])|(?<=[?؟])(?=[{_CJK}])|\n+")
_TRAIL = " \t\"'”’»)]}*_~!.…😊🙂"

_VERBS = (
    r"tell|give|provide|specify|share|send|confirm|clarify|enter|indicate|choose|select|"
    r"pick|let me know|describe|spell"
)
_MORE_VERBS = rf"{_VERBS}|type|include|supply|state|mention|advise|list"
_ASK = [
    # imperatives and polite requests, with or without a question mark
    rf"^(?:(?:please|kindly|now|ok(?:ay)?|sure|so|then|first|also),?\s+)*(?:{_VERBS})\b",
    rf"\b(?:please|kindly)\s+(?:just\s+|also\s+|first\s+)?(?:{_MORE_VERBS})\b",
    rf"\b(?:could|can|would|will)\s+you\s+(?:please\s+|kindly\s+|also\s+|first\s+)?"
    rf"(?:{_MORE_VERBS})\b",
    r"\blet me know\s+(?:which|what|where|when|who|whom|whose|how|whether|the|your|"
    r"if you(?:'d| would)? (?:like|prefer|want|mean)(?! me\b))",
    r"\byou can (?:tell|give|send|provide|let me know)\b",
    # a wh-question written without "?" ("What's the name of the file you want to
    # delete"), not a statement about what the assistant can do ("What I can do is ...")
    r"^(?:which|what|what's|where|when|who|whom|whose|how)\b(?!\s+(?:i|you|we)\b)"
    r"(?!.*\b(?:i|we) (?:can|could|will|would)\b).*\byour?\b",
    # Chinese / Japanese requests
    r"请(?:您)?(?:提供|告诉|输入|说明|确认|选择|指定|问)|教えて|お知らせ|入力して|指定して",
]
# "To do that I'll need to know the currency." - but "I would need a booking tool" is a
# statement of limits, not a request
_NEED = re.compile(
    r"\b(?:i|i'll|i will|i'd|i would|i still|we'll|we)\s+(?:still\s+|first\s+|also\s+)?"
    r"(?:need|require)\s+(?:to know|you to|your|the|a|an|more|some|which|what|one more)\b"
)
_NOT_NEEDED = re.compile(
    r"\b(?:tools?|functions?|apis?|access|permissions?|ability|capabilit\w*)\b"
)
# generic offers of help: they request nothing, as a question or not
_OFFER = [
    r"\b(?:anything|something) else\b",
    r"\b(?:any|an)other (?:question|request|task|thing)s?\b",
    r"\bother (?:questions|requests|tasks|things)\b",
    r"\b(?:what|how) else\b",
    r"\b(?:how|what) (?:can|may|could) i (?:help|assist|do)\b",
    r"\b(?:can|may) i (?:help|assist)\b",
    r"\bis there (?:anything|something)\b",
    r"还有(?:什么|其他|别的)|其他(?:问题|需要)|别的(?:问题|需要)|他に|ほかに",
    r"\balgo m[aá]s\b|\bautre chose\b|\bsonst noch\b",
]
_CONFIRM = [
    r"^(?:(?:so|ok(?:ay)?|alright|then),?\s+)?(?:would you like (?:me )?to|"
    r"do you want (?:me )?to|shall i|should i|want me to)\b",
    r"\binstead\b",
]
_DECLINE = [
    r"\b(?:sorry|apologi[sz]e|unfortunately|regrettably|i'm afraid|i am afraid)\b",
    r"\b(?:can't|cannot|can not|unable|not able|won't be able)\b",
    r"\b(?:do not|don't|does not|doesn't) (?:have|support|offer|provide)\b",
    r"\b(?:have|has) no (?:tool|function|api|way|access|abilit|capabilit)",
    r"\bno (?:tool|function|api)s?\b|\bnone of (?:the|my)\b",
    r"\b(?:outside|beyond) (?:of )?(?:my|the|what)\b|\bout of (?:my )?scope\b",
    r"\b(?:not|isn't|aren't|is not|are not) (?:supported|available|possible|something)\b",
    r"\bi can only\b|\bi'm only able\b|\bonly (?:able|designed|equipped)\b",
    r"\bnot (?:equipped|designed|set up)\b",
    r"抱歉|对不起|无法|不能|不支持|申し訳|できません|できかねます",
    r"\blo siento\b|\bno puedo\b|\bd[ée]sol[ée]\b|\bje ne peux pas\b|\bleider\b",
    r"\bkann ich (?:nicht|keine)\b",
]
_ASK_RE = [re.compile(p) for p in _ASK]
_OFFER_RE = re.compile("|".join(f"(?:{p})" for p in _OFFER))
_CONFIRM_RE = re.compile("|".join(f"(?:{p})" for p in _CONFIRM))
_DECLINE_RE = re.compile("|".join(f"(?:{p})" for p in _DECLINE))


def sentences(text: str) -> list[str]:
    """The reply's sentences, NFKC-normalized, lower case, straight apostrophes."""
    norm = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'").lower()
    return [s.strip(" \t-•*>\"'“”") for s in _SPLIT.split(norm) if s.strip(" \t-•*>\"'“”")]


def is_question(sentence: str) -> bool:
    return sentence.rstrip(_TRAIL).endswith(("?", "؟"))


def sentence_acts(sentence: str) -> set[str]:
    """What one (normalized) sentence does: a subset of ask, offer, confirm, decline."""
    acts: set[str] = set()
    if _DECLINE_RE.search(sentence):
        acts.add("decline")
    question = is_question(sentence)
    if _OFFER_RE.search(sentence):
        acts.add("offer")  # "Is there anything else I can help with?" requests nothing
    elif question and _CONFIRM_RE.search(sentence) and " or " not in sentence:
        acts.add("confirm")
    elif question or any(r.search(sentence) for r in _ASK_RE):
        acts.add("ask")
    elif _NEED.search(sentence) and not _NOT_NEEDED.search(sentence):
        acts.add("ask")
    return acts


def reply_kind(text: str | None) -> str:
    """``clarify`` when a text answer asks the user for information, else ``irrelevant``
    (see the module doc for the reading)."""
    acts: set[str] = set()
    for s in sentences(text or ""):
        acts |= sentence_acts(s)
    if "ask" in acts:
        return CLARIFY
    if "decline" in acts:
        return IRRELEVANT
    return CLARIFY if "confirm" in acts else IRRELEVANT
