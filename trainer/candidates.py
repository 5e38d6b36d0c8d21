"""Candidate rewrites for a query, proposed without labels; training then measures which ones help.

Why these sources: the rewrites that help over a stemmed baseline bridge vocabulary ("head set" ->
"headset") or name the catalog's product type ("usb stick" -> "flash drive", "sd card" -> "memory
card"); rewrites that add a brand, a number or an attribute value drift ("ssd" -> "Intel memory
module 16 GB"). So candidates come from:

1. the vocabulary bridge (``trainer.bridge``): the query with a shopper's phrase in the catalog's form;
2. spelling: an unknown query word replaced by the catalog word one edit away (deletion index);
3. the dominant product types among the baseline's top 30, alone and with the values the query asks;
4. catalog product types that share a (stemmed) word with the query or its bridged forms;
5. the query without words that carry no product meaning ("cheap", "best", ...);
6. optionally, the catalog title phrases nearest the query under a sentence encoder
   (``trainer.encoder_bridge``: knowledge of user vocabulary the catalog never states).

Every candidate passes ``admissible``: it never adds a brand, a number or an attribute value the
query does not hold, and never copies the query. Training labels are measured on these, so the
model learns to write the kind of rewrite that measurably helps, and nothing else.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

from qrw.trainer.bridge import Bridge
from qrw.trainer.encoder_bridge import EncoderBridge
from qrw.trainer.facets import CatalogFacets, numbers_in
from qrw.trainer.lexical import LexicalIndex, analyze

FILLER_WORDS = frozenset("cheap cheapest best new buy good original sale deal deals top latest free discount".split())
_WORD = re.compile(r"[\w\-]+")


def copy_key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


class SpellingIndex:
    """Catalog words (frequency >= ``min_count``) reachable by one deletion, for one-edit corrections."""

    def __init__(self, texts: Iterable[str], min_count: int = 5) -> None:
        counts = collections.Counter(w for t in texts for w in re.findall(r"[a-z]{4,}", t.casefold()))
        self.counts = {w: n for w, n in counts.items() if n >= min_count}
        self._deletes: dict[str, list[str]] = collections.defaultdict(list)
        for word in self.counts:
            for variant in self._one_deletion(word):
                self._deletes[variant].append(word)

    @staticmethod
    def _one_deletion(word: str) -> set[str]:
        return {word[:i] + word[i + 1 :] for i in range(len(word))} | {word}

    def known(self, word: str) -> bool:
        return word in self.counts

    def correct(self, word: str) -> str | None:
        """The most frequent catalog word within one edit of an unknown ``word`` (None if known or none)."""
        word = word.casefold()
        if len(word) < 4 or not word.isalpha() or self.known(word):
            return None
        found: collections.Counter = collections.Counter()
        for variant in self._one_deletion(word):
            for candidate in self._deletes.get(variant, ()):
                if candidate != word:
                    found[candidate] = self.counts[candidate]
        return found.most_common(1)[0][0] if found else None


def admissible(query: str, rewrite: str, facets: CatalogFacets) -> bool:
    """No copy, no brand, number or attribute value that the query does not hold."""
    if not rewrite.strip() or copy_key(rewrite) == copy_key(query):
        return False
    if facets.brands_in(rewrite) - facets.brands_in(query):
        return False
    if numbers_in(rewrite) - numbers_in(query):
        return False
    return not (facets.values_in(rewrite) - facets.values_in(query))


class CandidateGenerator:
    """Proposes candidate rewrites for any query (see the module docstring)."""

    def __init__(self, index: LexicalIndex, facets: CatalogFacets, bridge: Bridge, spelling: SpellingIndex, *,
                 top_k: int = 30, min_type_hits: int = 3, max_candidates: int = 10,
                 encoder_bridge: EncoderBridge | None = None) -> None:
        self.index = index
        self.facets = facets
        self.bridge = bridge
        self.spelling = spelling
        self.top_k = top_k
        self.min_type_hits = min_type_hits
        self.max_candidates = max_candidates
        self.encoder_bridge = encoder_bridge
        self._types_by_stem: dict[str, list[str]] = collections.defaultdict(list)
        for ptype, count in sorted(facets.type_counts.items(), key=lambda kv: -kv[1]):
            for stem in set(analyze(ptype)):
                self._types_by_stem[stem].append(ptype)

    def _value_words(self, query: str) -> list[str]:
        """The words of ``query`` that name attribute values (kept when a type is proposed)."""
        asked = self.facets.values_in(query)
        words = _WORD.findall(query.casefold())
        return [w for w in words if w in asked or any(ch.isdigit() for ch in w) or w in self.facets.colours]

    def propose(self, query: str) -> list[str]:
        query = " ".join(query.split())
        lower = query.casefold()
        out: list[str] = []
        out += self.bridge.catalog_forms(lower)
        words = lower.split()
        corrected = [w if w in FILLER_WORDS else (self.spelling.correct(w) or w) for w in words]
        if corrected != words:
            out.append(" ".join(corrected))
        kept = [w for w in words if w not in FILLER_WORDS]
        if kept and kept != words:
            out.append(" ".join(kept))
        values = " ".join(self._value_words(query))
        top = self.index.search(query, self.top_k)
        types = collections.Counter(f.product_type for f in (self.facets.get(d) for d in top) if f and f.product_type)
        for ptype, hits in types.most_common(3):
            if hits >= self.min_type_hits:
                out.append(ptype)
                if values:
                    out.append(f"{values} {ptype}")
        if self.encoder_bridge is not None:
            out += self.encoder_bridge.neighbours(lower)
        stems = {s for text in [lower, *out[:3]] for s in analyze(text)}
        related = [t for s in sorted(stems) for t in self._types_by_stem.get(s, [])[:2]]
        out += related[:4]
        seen: set[str] = set()
        result = []
        for text in out:
            key = copy_key(text)
            if key and key not in seen and admissible(query, text, self.facets):
                seen.add(key)
                result.append(" ".join(text.split()))
        return result[: self.max_candidates]
