"""Index respelling: correct the words of a query that the index does not hold, with OpenSearch's term suggester.

Why: a misspelled word (``gaming keybord``, ``usb stik``) often leaves the rest of the query matching
something, so zero-hit recovery (``plugin/recovery.py``) never fires, and the model proposes a
respelling only for typos it has seen. The index itself knows its vocabulary: OpenSearch's term
suggester with ``suggest_mode: missing`` answers only for words no document holds, with the index's
nearest words. A correction joins the served rewrites as a respelling (it may add documents, at
``RespellConfig.weight``); the user's own words stay in the query.

Why a typo filter on top of the suggester: a correct word the catalog lacks is "missing" too, and
the suggester offers the nearest catalog word for it (``frying pan`` -> ``flying pan``, ``thumb
drive`` -> ``thule drive``, ``tent`` -> ``test``). A correction is taken only when it is a plausible
*typo* of the typed word: one letter inserted, dropped, doubled, two neighbours swapped, a letter
replaced by a neighbouring key on a QWERTY keyboard, or, in words of five letters or more, one vowel
written for another (``moniter``; ``docs/eval/headroom.md`` §17). Words with digits
are never changed (``rtx 2060`` -> ``rtx 2070`` is another product).

Split compounds (``key board``, ``head set``) are no typo the suggester sees: both words are in the
index. The same request counts, index-wide, the documents that hold each adjacent pair of query words
joined into one word and the documents that hold the pair as a phrase (a ``filters`` aggregation over
only the documents holding one of them); a pair the catalog writes joined more often than split is
joined (``docs/eval/headroom.md`` §20).

``suggest_mode: missing`` is decided per shard, so an answer from several shards that proposes a
correction is confirmed by one more request, which counts index-wide the documents that hold each
typed word (``held_body``): a word some shard holds is kept as typed.

Pure and JSON in/out: builds the requests and reads their answers; the callers (proxy, clients,
``qrw eval``) do the I/O and the engine remembers the answers (``RewriteEngine.respelling``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from qrw.plugin.config import RespellConfig
from qrw.plugin.merge import WeightedRewrite
from qrw.plugin.widening import within_one_edit

SUGGEST_NAME = "qrw_respell"
HELD_NAME = "qrw_held"
JOIN_NAME = "qrw_join"
MAX_JOIN_PAIRS = 8
"""Adjacent pairs counted per query at most (the first ones): a query is a few words, a pasted paragraph is not."""
_TOKEN = re.compile(r"\S+")

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_AT = {ch: (row, col + row * 0.5) for row, keys in enumerate(_ROWS) for col, ch in enumerate(keys)}


@dataclasses.dataclass(frozen=True)
class Respelling:
    """The query with its unknown words corrected, and which words changed."""

    text: str
    words: tuple[tuple[str, str], ...]

    def as_dict(self, weight: float) -> dict:
        return {"text": self.text, "words": [list(pair) for pair in self.words], "weight": weight}


def neighbouring_keys(a: str, b: str) -> bool:
    """Whether two letters sit next to each other on a QWERTY keyboard (same row, or the row above or below)."""
    if a not in _KEY_AT or b not in _KEY_AT or a == b:
        return False
    (row_a, x_a), (row_b, x_b) = _KEY_AT[a], _KEY_AT[b]
    if row_a == row_b:
        return abs(x_a - x_b) == 1
    return abs(row_a - row_b) == 1 and abs(x_a - x_b) <= 0.5


VOWELS = frozenset("aeiou")
MIN_VOWEL_SLIP_LENGTH = 5
SOUND_ALIKE = frozenset(frozenset(pair) for pair in ("bp", "dt", "gk", "fv", "sz", "ck", "cs"))
"""Consonants written for one another because they sound alike (voiced and unvoiced pairs, hard and soft c):
``labtop`` for laptop. A general model of spelling by ear, like vowel slips; not a list of words."""


def plausible_typo(typed: str, suggested: str, *, vowel_slips: bool = True, sound_slips: bool = True) -> bool:
    """Whether ``typed`` is ``suggested`` with one typing slip: a letter inserted, dropped or doubled, two
    neighbours swapped, a letter replaced by a neighbouring key, or, in a typed word of at least
    ``MIN_VOWEL_SLIP_LENGTH`` letters, one vowel written for another (``vowel_slips``) or one consonant for
    the one that sounds alike (``sound_slips``, ``SOUND_ALIKE``). Letters only."""
    typed, suggested = typed.casefold(), suggested.casefold()
    if typed == suggested or not typed.isalpha() or not suggested.isalpha() or not within_one_edit(typed, suggested):
        return False
    if len(typed) != len(suggested):
        return True  # one letter inserted or dropped
    differ = [i for i, (x, y) in enumerate(zip(typed, suggested)) if x != y]
    if len(differ) == 2:
        return True  # two neighbours swapped (within_one_edit allows no other two-letter difference)
    a, b = typed[differ[0]], suggested[differ[0]]
    long_enough = len(typed) >= MIN_VOWEL_SLIP_LENGTH
    if vowel_slips and a in VOWELS and b in VOWELS and long_enough:
        return True  # moniter -> monitor: spelled as it sounds
    if sound_slips and frozenset((a, b)) in SOUND_ALIKE and long_enough:
        return True  # labtop -> laptop
    return neighbouring_keys(a, b)


def split_pairs(text: str, min_length: int = 1) -> list[tuple[int, int, str, str]]:
    """(offset, length, the pair as the index's lowercase filter reads it, the two words joined) for each two
    adjacent words of ``text`` made of letters only whose joined form has at least ``min_length`` letters."""
    tokens = [(m.start(), m.group()) for m in _TOKEN.finditer(text)]
    pairs = []
    for (start, first), (second_start, second) in zip(tokens, tokens[1:]):
        if first.isalpha() and second.isalpha() and len(first) + len(second) >= min_length:
            pairs.append((start, second_start + len(second) - start, f"{first} {second}".lower(), (first + second).lower()))
    return pairs


def _join_filters(text: str, config: RespellConfig) -> dict[str, dict]:
    """The ``filters`` aggregation's buckets: for each split pair, the documents holding the joined word and the
    documents holding the pair as a phrase, in ``config.field``; the first ``MAX_JOIN_PAIRS`` pairs. The answer's
    reader (``_joins``) takes the pairs it finds buckets for."""
    if not config.join_split_words:
        return {}
    filters: dict[str, dict] = {}
    for _offset, _length, pair, joined in split_pairs(text, config.min_word_length)[:MAX_JOIN_PAIRS]:
        filters[f"joined:{joined}"] = {"term": {config.field: joined}}
        filters[f"split:{pair}"] = {"match_phrase": {config.field: pair}}
    return filters


def worth_asking(text: str, config: RespellConfig) -> bool:
    """Whether ``text`` has a word the suggester could correct (letters only, at least ``min_word_length``) or two
    adjacent words that could be joined (``join_split_words``): a query of short words and numbers costs no
    suggest request."""
    return (any(word.isalpha() and len(word) >= config.min_word_length for word in text.split())
            or (config.join_split_words and bool(split_pairs(text, config.min_word_length))))


def suggest_body(text: str, config: RespellConfig) -> dict:
    """The search body that asks the index which words of ``text`` it does not hold, and their nearest words, and
    (``join_split_words``) how many documents hold each adjacent pair of its words joined and as a phrase. It
    returns no hit: without pairs it matches no document and only the suggester runs; with pairs it visits only
    the documents holding one of the counted forms."""
    body: dict = {
        "size": 0,
        "track_total_hits": False,
        "query": {"match_none": {}},
        "suggest": {SUGGEST_NAME: {"text": text, "term": {
            "field": config.field, "suggest_mode": "missing", "size": config.suggestions, "sort": "score",
            "max_edits": config.max_edits, "prefix_length": config.prefix_length,
            "min_word_length": config.min_word_length, "string_distance": "internal"}}},
    }
    filters = _join_filters(text, config)
    if filters:  # the counts behind joining split words: only the documents that hold one of them are visited
        body["query"] = {"bool": {"should": list(filters.values())}}
        body["aggs"] = {JOIN_NAME: {"filters": {"filters": filters}}}
    return body


def _entries(response: Any) -> list | None:
    if not isinstance(response, Mapping) or "error" in response:
        return None
    suggest = response.get("suggest")
    if not isinstance(suggest, Mapping):
        return None
    entries = suggest.get(SUGGEST_NAME)
    if entries is None:  # ?typed_keys prefixes the name with the suggester's type
        entries = suggest.get(f"term#{SUGGEST_NAME}")
    return entries if isinstance(entries, list) else None


def _corrections(text: str, response: Any, vowel_slips: bool, sound_slips: bool) -> list[tuple[int, int, str, str]]:
    """(offset, length, typed word, correction) for each word the suggester answers with a plausible typo fix."""
    changes: list[tuple[int, int, str, str]] = []
    for entry in _entries(response) or []:
        if not isinstance(entry, Mapping):
            continue
        offset, length, options = entry.get("offset"), entry.get("length"), entry.get("options")
        if not isinstance(offset, int) or not isinstance(length, int) or not isinstance(options, list):
            continue
        if offset < 0 or length <= 0 or offset + length > len(text):
            continue
        typed = text[offset:offset + length]
        for option in options:
            candidate = option.get("text") if isinstance(option, Mapping) else None
            if isinstance(candidate, str) and plausible_typo(typed, candidate, vowel_slips=vowel_slips, sound_slips=sound_slips):
                changes.append((offset, length, typed, candidate))
                break
    return changes


def _join_counts(response: Any) -> Mapping | None:
    """The buckets of the split-word counts in an answer to ``suggest_body``, or None when it has none."""
    aggregations = response.get("aggregations") if isinstance(response, Mapping) else None
    if not isinstance(aggregations, Mapping):
        return None
    found = aggregations.get(JOIN_NAME, aggregations.get(f"filters#{JOIN_NAME}"))  # ?typed_keys prefixes the type
    buckets = found.get("buckets") if isinstance(found, Mapping) else None
    return buckets if isinstance(buckets, Mapping) else None


def _doc_count(buckets: Mapping, key: str) -> int | None:
    bucket = buckets.get(key)
    count = bucket.get("doc_count") if isinstance(bucket, Mapping) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _joins(text: str, response: Any, min_docs: int) -> list[tuple[int, int, str, str]]:
    """(offset, length, typed pair, joined word) for each split pair the answer counted whose joined word at least
    ``min_docs`` documents hold, and more documents than hold the pair as a phrase."""
    buckets = _join_counts(response)
    if buckets is None:
        return []
    joins = []
    for offset, length, pair, joined in split_pairs(text):
        together, apart = _doc_count(buckets, f"joined:{joined}"), _doc_count(buckets, f"split:{pair}")
        if together is not None and apart is not None and together >= min_docs and together > apart:
            joins.append((offset, length, text[offset:offset + length], joined))
    return joins


def respelled(text: str, response: Any, *, vowel_slips: bool = True, sound_slips: bool = True,
              held: Collection[str] = (), join_min_docs: int = 3) -> Respelling | None:
    """``text`` with each unknown word replaced by the suggester's first plausible typo fix, and each split pair the
    answer counted joined where the catalog writes it as one word (``join_min_docs``: see ``_joins``); None when
    nothing changes or the answer is not an answer to ``suggest_body(text, ...)``. Words in ``held`` (lowercased
    as the index's lowercase filter does: the words a ``held_body`` check found in the index) are kept as typed.
    A pair is joined only where no typo fix touches it and no pair to its left was joined."""
    changes = [c for c in _corrections(text, response, vowel_slips, sound_slips) if c[2].lower() not in held]
    for join in _joins(text, response, join_min_docs):
        start, end = join[0], join[0] + join[1]
        if all(end <= offset or start >= offset + length for offset, length, _t, _c in changes):
            changes.append(join)
    if not changes:
        return None
    out = text
    for offset, length, _typed, candidate in sorted(changes, reverse=True):
        out = out[:offset] + candidate + out[offset + length:]
    return Respelling(out, tuple((typed, candidate) for _o, _l, typed, candidate in sorted(changes)))


# -- words the index holds after all: a multi-shard answer is checked ------------------------------------
#
# ``suggest_mode: missing`` is decided per shard: a word held by some shards of the index (or of the indices
# behind an alias) but not by others is "missing" on those, and they suggest its nearest words. On a
# five-shard index a rare, correctly spelled word (``tripod`` in one product) would be "corrected" to a
# neighbour (``tripods``). So when the answer came from more than one shard and proposes a correction, the
# typed words are checked once more, index-wide, with a count of the documents that match each of them:
# a second request, sent only for such answers (typos, and words a shard lacks), and cheap, since it only
# visits the documents that hold those rare words.


def shards_answered(response: Any) -> int | None:
    """How many shards a search answer came from (``_shards.total``), or None when the answer does not say."""
    shards = response.get("_shards") if isinstance(response, Mapping) else None
    total = shards.get("total") if isinstance(shards, Mapping) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def words_to_confirm(text: str, response: Any, *, vowel_slips: bool = True, sound_slips: bool = True) -> tuple[str, ...]:
    """The typed words whose proposed corrections need an index-wide check (lowercased as the index's lowercase
    filter does, not casefolded: ``ß`` stays ``ß``): none for an answer from a single shard, where "missing"
    already means missing from the whole index."""
    if shards_answered(response) == 1:
        return ()
    return tuple(sorted({typed.lower() for _o, _l, typed, _c in _corrections(text, response, vowel_slips, sound_slips)}))


def held_body(words: Sequence[str], config: RespellConfig) -> dict:
    """The search body that counts, index-wide, the documents holding each of ``words`` in ``config.field``
    (a ``filters`` aggregation, one bucket per word, over the documents that hold any of them)."""
    matches = {word: {"match": {config.field: {"query": word}}} for word in words}
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"should": list(matches.values())}},
        "aggs": {HELD_NAME: {"filters": {"filters": matches}}},
    }


def held_words(response: Any, words: Sequence[str]) -> frozenset[str] | None:
    """Which of ``words`` the index holds, read from the answer to ``held_body(words, ...)``; None when the answer
    is not one (a failure, an error, a bucket missing): the corrections then stay unconfirmed."""
    if not isinstance(response, Mapping) or "error" in response:
        return None
    aggregations = response.get("aggregations")
    if not isinstance(aggregations, Mapping):
        return None
    found = aggregations.get(HELD_NAME, aggregations.get(f"filters#{HELD_NAME}"))  # ?typed_keys prefixes the type
    buckets = found.get("buckets") if isinstance(found, Mapping) else None
    if not isinstance(buckets, Mapping) or any(not isinstance(buckets.get(w), Mapping) for w in words):
        return None
    return frozenset(w for w in words if (buckets[w].get("doc_count") or 0) > 0)


def with_respelling(kept: Sequence[WeightedRewrite], respelling: Respelling | None, weight: float) -> list[WeightedRewrite]:
    """The rewrites to merge: ``kept`` plus the respelling (it may add documents). A kept rewrite with the same
    words (case ignored) is served once, at the larger of the two weights."""
    if respelling is None:
        return list(kept)
    key = respelling.text.casefold().split()
    out, merged = [], False
    for rewrite in kept:
        if not merged and rewrite.text.casefold().split() == key:
            out.append(WeightedRewrite(rewrite.text, max(rewrite.weight, weight), True))
            merged = True
        else:
            out.append(rewrite)
    if not merged:
        out.append(WeightedRewrite(respelling.text, weight, True))
    return out
