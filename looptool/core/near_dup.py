"""Near-duplicate detection of samples: word 3-gram shingles and Jaccard similarity.

EDDE compares a child with its seed and siblings pairwise (a handful of sets) and with a
whole split (the held-out samples) through :class:`ShingleIndex`, an exact Jaccard
threshold search with prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007): two
sets with Jaccard >= t share a token among the first ``|x| - ceil(t |x|) + 1`` tokens of
each under one global token order, so only sets sharing such a prefix token are compared.
Rare tokens first keeps the candidate lists short.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from pydantic import ValidationError

from looptool.core.render import render_conversation
from looptool.core.tables import sample_from_row
from looptool.core.types import Sample, canonical_json


def shingles(sample: Sample, n: int = 3) -> frozenset[str]:
    """Word n-grams of the conversation and the label (tools and tool order left out)."""
    text = render_conversation(sample.context) + "\n" + canonical_json(sample.label.to_json())
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class ShingleIndex:
    """The shingle sets of many samples, searchable for Jaccard >= ``threshold``."""

    def __init__(self, ids: Sequence[str], sets: Sequence[frozenset[str]], threshold: float):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.ids, self.sets, self.threshold = list(ids), list(sets), threshold
        self._id_set = set(self.ids)
        self._freq = Counter(tok for s in self.sets for tok in s)
        self._postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sets):
            for tok in self._prefix(s):
                self._postings[tok].append(i)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._id_set

    def _prefix(self, s: frozenset[str]) -> list[str]:
        # Global order: rarest first, ties by the token itself (a query's unseen tokens
        # have frequency 0 and sort first, consistently for every set).
        size = len(s) - math.ceil(self.threshold * len(s)) + 1
        return sorted(s, key=lambda tok: (self._freq.get(tok, 0), tok))[:size]

    def most_similar(self, s: frozenset[str]) -> tuple[str, float] | None:
        """(id, Jaccard) of the most similar indexed set at or above the threshold, else None."""
        candidates = {i for tok in self._prefix(s) for i in self._postings.get(tok, ())}
        best = max(((jaccard(s, self.sets[i]), -i) for i in candidates), default=None)
        if best is None or best[0] < self.threshold:
            return None
        return self.ids[-best[1]], best[0]


def rows_index(rows: Sequence[dict], threshold: float, what: str) -> ShingleIndex:
    """A :class:`ShingleIndex` over SAMPLES rows (``sample_id``, ``tools``, ``context``,
    ``label``); ValueError naming ``what`` and the row when one does not rebuild into a
    sample."""
    sets = []
    for i, r in enumerate(rows):
        try:
            sets.append(shingles(sample_from_row(r)))
        except (ValueError, TypeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(f"{what} row {i} ({r['sample_id']}): {first}") from None
    return ShingleIndex([r["sample_id"] for r in rows], sets, threshold)
