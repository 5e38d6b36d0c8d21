"""A vocabulary bridge mined from the catalog: the other ways a shopper may write a catalog phrase.

Why mined, not listed: a hand-written list of user words covers what its author thought of and
tempts one to write down the evaluation queries. Every pair here comes from the catalog's own text,
by rules that would run unchanged on another catalog:

* **compounds**: a catalog word that is two frequent catalog words joined (``headset`` = ``head`` +
  ``set``, ``backpack``, ``touchscreen``); shoppers write either form;
* **hyphens**: ``wi-fi`` / ``wifi`` / ``wi fi``, ``e-book`` / ``ebook`` (the tokenizer splits at the
  hyphen, so ``wifi`` and ``wi-fi`` do not match each other);
* **abbreviations**: ``Long Form (ABBR)`` where the letters are the words' initials
  (``uninterruptible power supply`` / ``ups``);
* **spelling**: British forms the catalog uses and their American forms (``colour`` / ``color``,
  ``fibre`` / ``fiber``, ``aluminium`` / ``aluminum``, ``-ise`` / ``-ize``), kept when the catalog
  holds the British one.

The bridge is used in two directions: pseudo-queries are written with the shopper's form, and
candidate rewrites are proposed with the catalog's form. Which candidates help is then *measured*.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

_WORD = re.compile(r"[a-z][a-z]+")
_HYPHENATED = re.compile(r"\b([a-z]{1,8})-([a-z]{1,8})\b")
_ABBREVIATION = re.compile(r"((?:[A-Za-z][\w-]*\s+){1,5})\(([A-Z]{2,6})\)")
_BRITISH = ((r"our$", "or"), (r"([^aeiou])re$", r"\1er"), (r"isation$", "ization"), (r"yse$", "yze"),
            (r"ogue$", "og"), (r"lled$", "led"))
_SUFFIXES = frozenset("ion ions ing ings ers ness able ible ment ments ity ive ance ence ful less ous ally".split())


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two spellings of one thing: the catalog's form and a shopper's form, with where it came from."""

    catalog: str
    user: str
    kind: str
    evidence: int


class Bridge:
    """Pairs of (catalog form, user form); lookups in both directions on whole words."""

    def __init__(self, pairs: Iterable[Pair]) -> None:
        self.pairs = sorted(set(pairs), key=lambda p: (p.kind, -p.evidence, p.catalog, p.user))
        self._to_user: dict[str, list[str]] = collections.defaultdict(list)
        self._to_catalog: dict[str, list[str]] = collections.defaultdict(list)
        for pair in self.pairs:
            self._to_user[pair.catalog].append(pair.user)
            self._to_catalog[pair.user].append(pair.catalog)

    def __len__(self) -> int:
        return len(self.pairs)

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(p.kind for p in self.pairs))

    @staticmethod
    def _substitutions(text: str, table: Mapping[str, Sequence[str]]) -> list[str]:
        words = text.casefold().split()
        out = []
        for size in (3, 2, 1):
            for start in range(len(words) - size + 1):
                phrase = " ".join(words[start : start + size])
                for other in table.get(phrase, ()):
                    out.append(" ".join(words[:start] + [other] + words[start + size :]))
        return list(dict.fromkeys(out))

    def user_forms(self, text: str) -> list[str]:
        """``text`` with one catalog phrase replaced by a shopper's form (every such variant)."""
        return self._substitutions(text, self._to_user)

    def catalog_forms(self, text: str) -> list[str]:
        """``text`` with one shopper's phrase replaced by the catalog's form (every such variant)."""
        return self._substitutions(text, self._to_catalog)

    def examples(self, kind: str, n: int = 5) -> list[str]:
        return [f"{p.catalog} / {p.user}" for p in self.pairs if p.kind == kind][:n]


def _vocabulary(texts: Iterable[str]) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for text in texts:
        counts.update(_WORD.findall(text.casefold()))
    return counts


def mine_bridge(texts: Sequence[str], *, min_part_count: int = 20, min_count: int = 3) -> Bridge:
    """Mine every kind of pair from catalog ``texts`` (titles, names, descriptions)."""
    vocab = _vocabulary(texts)
    pairs: list[Pair] = []
    # compounds: "headset" <- "head set"
    for word, n in vocab.items():
        if n < min_count or len(word) < 7:
            continue
        for i in range(3, len(word) - 2):
            left, right = word[:i], word[i:]
            if (len(right) >= 3 and right not in _SUFFIXES and vocab[left] >= min_part_count
                    and vocab[right] >= min_part_count):
                pairs.append(Pair(word, f"{left} {right}", "compound", n))
                break
    # hyphens: "wi-fi" -> "wifi", "wi fi"
    hyphenated: collections.Counter = collections.Counter()
    for text in texts:
        hyphenated.update(m.group(0) for m in _HYPHENATED.finditer(text.casefold()))
    for form, n in hyphenated.items():
        if n >= min_count:
            left, right = form.split("-")
            pairs.append(Pair(form, left + right, "hyphen", n))
            pairs.append(Pair(form, f"{left} {right}", "hyphen", n))
    # abbreviations: "uninterruptible power supply (UPS)"
    abbreviations: collections.Counter = collections.Counter()
    for text in texts:
        for match in _ABBREVIATION.finditer(text):
            letters = match.group(2)
            words = match.group(1).split()[-len(letters):]
            if len(words) == len(letters) and "".join(w[0] for w in words).upper() == letters:
                abbreviations[(" ".join(words).casefold(), letters.casefold())] += 1
    for (long_form, short), n in abbreviations.items():
        if n >= min_count:
            pairs.append(Pair(long_form, short, "abbreviation", n))
            pairs.append(Pair(short, long_form, "abbreviation", n))
    # spelling: the catalog's British form -> the American form
    for word, n in vocab.items():
        if n < min_count or len(word) < 5:
            continue
        for pattern, replacement in _BRITISH:
            american = re.sub(pattern, replacement, word)
            if american != word:
                pairs.append(Pair(word, american, "spelling", n))
                break
    return Bridge(pairs)


def catalog_texts(products: Iterable) -> list[str]:
    """The texts the bridge is mined from: title, name and short description of every product."""
    return [" . ".join(t for t in (p.title, p.name, p.short_description) if t) for p in products]
