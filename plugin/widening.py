"""Which kept rewrites may *add* documents the user's query does not match (the ``confident`` merge mode).

Why: a rewrite the gate keeps only down-weighted is one the tagger is unsure of. Under
``merge.mode: confident`` such a rewrite only reorders what the query already finds, so an unsure
``netflix`` -> ``network cable`` cannot turn a query without results into a page of cables. Three
kinds of rewrite may still add documents, because they cannot change what the user asked for, or a
person vouched for them:

* a full-weight gate decision (P(exact) >= ``full_min``);
* a merchandiser's rule;
* a *respelling* of the query: the same words, corrected (``labtop`` -> ``laptop``, ``hedphones`` ->
  ``headphones``) or joined / split (``smart watch`` -> ``smartwatch``, ``wi-fi`` -> ``wifi``). A
  misspelled query often matches nothing, and only its corrected spelling can find anything.

A respelling keeps the number of words and changes each by at most one edit (insert, delete,
substitute or swap two neighbours), only in words of at least ``MIN_EDITED_LENGTH`` letters; numbers
and words with digits must stay as they are (``rtx 2060`` -> ``rx 2060`` is another product, not a
typo). Pure; no I/O.
"""

from __future__ import annotations

import re

MIN_EDITED_LENGTH = 4
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by at most one insertion, deletion, substitution or swap of neighbours."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if len(differ) == 1:
            return True
        return len(differ) == 2 and differ[1] == differ[0] + 1 and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]]
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(shorter) and shorter[i] == longer[i]:
        i += 1
    return shorter[i:] == longer[i + 1:]


def is_respelling(query: str, rewrite: str) -> bool:
    """Whether ``rewrite`` is ``query`` respelled: joined / split words, or one small typo fix per word."""
    query_words, rewrite_words = _words(query), _words(rewrite)
    if not query_words or not rewrite_words or query_words == rewrite_words:
        return False
    if "".join(query_words) == "".join(rewrite_words):
        return True  # joined, split or re-hyphenated: "smart watch" <-> "smartwatch"
    if len(query_words) != len(rewrite_words):
        return False
    for q, r in zip(query_words, rewrite_words):
        if q == r:
            continue
        if any(ch.isdigit() for ch in q + r) or min(len(q), len(r)) < MIN_EDITED_LENGTH or not within_one_edit(q, r):
            return False
    return True


def may_add_documents(query: str, rewrite: str, *, full: bool, from_rule: bool = False) -> bool:
    """Whether, under the ``confident`` merge mode, a kept rewrite may bring in documents the query does not match."""
    return full or from_rule or is_respelling(query, rewrite)
