"""An in-process BM25 mirror of the baseline query, for the training loop.

Why: labelling candidate rewrites by *measured retrieval gain* searches every candidate twice
(merged with the baseline, and alone), for tens of thousands of training queries, and GRPO does the
same for every sampled completion at every step. A round trip to OpenSearch per search would make
that the bottleneck on a 2-core machine; scoring in process with ``bm25s`` (sparse matrices, the
Lucene BM25 variant) costs a fraction of a millisecond. It mirrors what the node does:

* the analysis of ``qrw.search.baseline`` (standard-tokenizer-like split, lowercase, asciifolding,
  possessive stripping, Porter stemming with PyStemmer's ``porter``, the same algorithm as Lucene's
  ``porter_stem``);
* one BM25 index per field of the ``BaselineSpec`` (``all_text`` = every text field, ``f.stem`` =
  one field, ``all_text.join`` = every text field with adjacent words also joined, as the
  ``qrw_joined`` analyzer's shingles), with the index's k1 and b (``qrw.search.baseline.SIMILARITY``); a ``most_fields`` query sums the boosted field
  scores, ``best_fields`` takes the best plus ``tie_breaker`` times the rest;
* a merged query is ``original + sum(weight_i * rewrite_i)`` over documents matching at least one
  clause, and a rewrite clause with ``operator: and`` only counts on documents holding all its terms.

It is an approximation (Lucene stores document lengths in one byte; tie order can differ), so
``agreement_with_opensearch`` measures it against the real node, and the data card reports that
figure. Evaluation always uses the real node.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from qrw.search.baseline import BM25_B as B
from qrw.search.baseline import BM25_K1 as K1
from qrw.search.baseline import CATCH_ALL, CATCH_ALL_JOINED, STEM_SUFFIX, BaselineSpec

# UAX#29 as the standard tokenizer applies it: '.' and apostrophes join what they sit between, a
# comma only digits ("1,000" stays one token, "blue,silver" is two)
_TOKEN = re.compile(r"[^\W_]+(?:(?:[.'’]|(?<=\d),(?=\d))[^\W_]+)*|[®™©]", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("porter")


def _fold(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _words(text: str) -> list[str]:
    tokens = [_POSSESSIVE.sub("", _fold(t.casefold())) for t in _TOKEN.findall(text)]
    return [t for t in tokens if t]


def analyze(text: str) -> list[str]:
    """The terms the stemmed analyzer (``qrw_stemmed``) makes of ``text``."""
    tokens = _words(text)
    return _stemmer().stemWords(tokens) if tokens else []


def analyze_joined(text: str) -> list[str]:
    """The terms the joined-pairs analyzer (``qrw_joined``) makes of ``text``: the stemmed words, then
    each adjacent pair joined without a space and stemmed (the shingle filter runs before the stemmer)."""
    return _joined_terms(_words(text))


def _joined_terms(tokens: list[str]) -> list[str]:
    joined = tokens + [a + b for a, b in itertools.pairwise(tokens)]
    return _stemmer().stemWords(joined) if joined else []


def joined_groups(text: str) -> list[list[str]]:
    """The query terms of the ``qrw_joined`` field grouped by position, as OpenSearch's ``match`` reads
    them: each word with the pair it starts, e.g. ``micro sd card`` -> [micro, microsd], [sd, sdcard],
    [card]. The node makes each group one ``Synonym`` term (checked with ``_validate/query?explain``),
    so an ``operator: and`` clause needs one term of every group, not every term."""
    tokens = _words(text)
    groups = [[a, a + b] for a, b in itertools.pairwise(tokens)] + ([[tokens[-1]]] if tokens else [])
    return [_stemmer().stemWords(group) for group in groups]


class _FieldIndex:
    """BM25 over one field: a bm25s index plus, per term, the set of documents holding it (for ``and``)."""

    def __init__(self, docs: Sequence[list[str]]) -> None:
        import bm25s

        self.bm25 = bm25s.BM25(method="lucene", k1=K1, b=B)
        self.bm25.index([d if d else [""] for d in docs], show_progress=False)
        size = len(self.bm25.scores["indptr"]) - 1
        # bm25s may list a placeholder token it never indexed; only indexed terms count
        self.vocab = {term: i for term, i in self.bm25.vocab_dict.items() if i < size and term}
        self.n_docs = len(docs)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return self.bm25.get_scores_from_ids(ids)

    def holds_all(self, terms: Sequence[str]) -> np.ndarray:
        """Boolean mask of documents holding every term (a term unknown to the field matches nothing)."""
        mask = np.ones(self.n_docs, dtype=bool)
        for term in set(terms):
            if term not in self.vocab:
                return np.zeros(self.n_docs, dtype=bool)
            mask &= self.bm25.get_scores_from_ids([self.vocab[term]]) > 0
        return mask


def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def lucene_length(length: int) -> int:
    """A field length as Lucene stores it in a one-byte norm and reads it back (``SmallFloat.intToByte4``
    then ``byte4ToInt``): exact up to 23, then rounded down to 4 significant bits."""
    if length < _FREE_VALUES:
        return length
    return _FREE_VALUES + _int4_to_long(_long_to_int4(length - _FREE_VALUES))


class _JoinedFieldIndex:
    """BM25 over the joined-pairs field, scored as the node scores it.

    The node reads each query group (a word and the pair it starts) as one ``Synonym`` term: the
    group's frequency in a document is the sum of its terms', its document frequency the largest
    of theirs. Lengths follow Lucene's ``discountOverlaps``: a joined pair sits at its first word's
    position, so a document's length counts its words only, while the average length divides every
    posting (pairs included) by the number of documents; a length is stored in one byte as Lucene
    stores it (``lucene_length``). bm25s cannot express any of these, hence this
    small index of its own (postings per term, numpy only).
    """

    def __init__(self, values_per_doc: Sequence[Sequence[str]]) -> None:
        self.n_docs = len(values_per_doc)
        postings: dict[str, dict[int, int]] = {}
        lengths = np.zeros(self.n_docs, dtype=np.float64)
        total = 0
        for doc, values in enumerate(values_per_doc):
            for value in values:
                words = _words(value)
                terms = _joined_terms(words)
                lengths[doc] += len(words)
                total += len(terms)
                for term in terms:
                    row = postings.setdefault(term, {})
                    row[doc] = row.get(doc, 0) + 1
        self.postings = {t: (np.fromiter(r.keys(), dtype=np.int64), np.fromiter(r.values(), dtype=np.float64))
                         for t, r in postings.items()}
        with_field = int((lengths > 0).sum()) or 1
        stored = np.array([lucene_length(int(n)) for n in lengths], dtype=np.float64)
        self.norm = K1 * (1 - B + B * stored / (total / with_field))
        self.with_field = with_field

    def _group(self, group: Sequence[str]) -> tuple[np.ndarray, int]:
        freq = np.zeros(self.n_docs, dtype=np.float64)
        df = 0
        for term in set(group):
            if term in self.postings:
                docs, tf = self.postings[term]
                freq[docs] += tf
                df = max(df, len(docs))
        return freq, df

    def scores(self, groups: Sequence[Sequence[str]], *, every_group: bool = False) -> np.ndarray:
        """BM25 of ``groups``; with ``every_group`` (``operator: and``) 0 where a group has no term."""
        total = np.zeros(self.n_docs, dtype=np.float64)
        held = np.ones(self.n_docs, dtype=bool)
        for group in groups:
            freq, df = self._group(group)
            held &= freq > 0
            if df:
                idf = np.log(1 + (self.with_field - df + 0.5) / (df + 0.5))
                total += idf * freq / (freq + self.norm)
        if every_group:
            total = np.where(held, total, 0.0)
        return total.astype(np.float32)


def _field_and_boost(field: str) -> tuple[str, float]:
    name, _, boost = field.partition("^")
    return name, float(boost) if boost else 1.0


class LexicalIndex:
    """The catalog as ``bm25s`` indexes per baseline field; scores queries the way the baseline does."""

    def __init__(self, documents: Sequence[Mapping[str, str]], ids: Sequence[str], spec: BaselineSpec,
                 text_fields: Sequence[str]) -> None:
        self.ids = list(ids)
        self.position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        if spec.fuzziness not in (None, "0") or spec.fuzzy_boost is not None:
            what = f"fuzziness ({spec.fuzziness!r})" if spec.fuzzy_boost is None else f"a fuzzy copy (fuzzy_boost {spec.fuzzy_boost})"
            raise ValueError(f"the in-process index does not mirror {what}; train against a baseline without it")
        self.spec = spec
        self.fields = [_field_and_boost(f) for f in spec.fields]
        self._index: dict[str, _FieldIndex | _JoinedFieldIndex] = {}
        for name, _ in self.fields:
            if name in (CATCH_ALL, CATCH_ALL_JOINED):
                # copy_to gives every field's value its own position run, so no pair spans two fields
                values = [[str(doc.get(f) or "") for f in text_fields] for doc in documents]
            elif name.endswith(STEM_SUFFIX):
                values = [[str(doc.get(name[: -len(STEM_SUFFIX)]) or "")] for doc in documents]
            else:
                raise ValueError(f"the in-process index mirrors stemmed and joined fields only, not {name!r}")
            if name == CATCH_ALL_JOINED:
                self._index[name] = _JoinedFieldIndex(values)
            else:
                self._index[name] = _FieldIndex([[t for v in vals for t in analyze(v)] for vals in values])

    @classmethod
    def from_products(cls, products: Iterable, spec: BaselineSpec) -> LexicalIndex:
        from qrw.search.index import TEXT_FIELDS

        documents = [p.to_document() for p in products]
        return cls(documents, [d["id"] for d in documents], spec, TEXT_FIELDS)

    # -- scoring --------------------------------------------------------------------------------

    def clause_scores(self, text: str, *, operator: str | None = None) -> np.ndarray:
        """Scores of one baseline clause for ``text`` (0 where the clause does not match)."""
        terms, groups = analyze(text), joined_groups(text)
        per_field = []
        for name, boost in self.fields:
            field = self._index[name]
            every = (operator or self.spec.operator) == "and"
            if isinstance(field, _JoinedFieldIndex):
                scores = field.scores(groups, every_group=every) * boost
            else:
                scores = field.scores(terms) * boost
                if every:
                    scores = np.where(field.holds_all(terms), scores, 0.0)
            per_field.append(scores)
        stacked = np.vstack(per_field)
        if self.spec.type == "best_fields" and len(per_field) > 1:
            best = stacked.max(axis=0)
            return best + (self.spec.tie_breaker or 0.0) * (stacked.sum(axis=0) - best)
        return stacked.sum(axis=0)

    def merged_scores(self, query: str, rewrites: Sequence[tuple[str, float]], *, operator: str | None = None) -> np.ndarray:
        """``original + sum(weight * rewrite clause)``, as the plugin's ``expand`` merge sends it."""
        total = self.clause_scores(query)
        for text, weight in rewrites:
            if weight > 0 and text.strip():
                total = total + weight * self.clause_scores(text, operator=operator)
        return total

    def rank(self, scores: np.ndarray, k: int = 10) -> list[str]:
        """Top ``k`` ids of matching documents, ties broken by id as ``qrw.search.runner`` does."""
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return []
        part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        cut = scores[part].min()
        pool = np.nonzero(scores >= cut)[0]  # everything tied with the k-th, so the id tie-break is exact
        ordered = sorted(pool, key=lambda i: (-scores[i], self.ids[i]))
        return [self.ids[i] for i in ordered[:k]]

    def total(self, scores: np.ndarray) -> int:
        return int((scores > 0).sum())

    def search(self, text: str, k: int = 10) -> list[str]:
        return self.rank(self.clause_scores(text), k)

    def search_merged(self, query: str, rewrites: Sequence[tuple[str, float]], k: int = 10,
                      operator: str | None = None) -> list[str]:
        return self.rank(self.merged_scores(query, rewrites, operator=operator), k)


def rerank_mask(original: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``scores`` kept only where ``original`` matches: rewrites grouped under the original as a filter
    (the plugin's ``rerank`` / ``confident`` merge modes)."""
    return np.where(original > 0, scores, 0.0)


def agreement_with_opensearch(index: LexicalIndex, client, alias: str, texts: Sequence[str], k: int = 10) -> dict:
    """How closely the in-process ranking follows the node's: mean top-``k`` overlap and top-1 agreement."""
    from qrw.search.runner import search_many

    rankings = search_many(client, alias, {t: index.spec.build(t) for t in texts}, depth=k)
    overlaps, top1 = [], []
    for text in texts:
        node = rankings[text].ids[:k]
        mine = index.search(text, k)
        if not node and not mine:
            continue
        overlaps.append(len(set(node) & set(mine)) / max(len(node), len(mine)))
        top1.append(bool(node and mine and node[0] == mine[0]))
    return {"texts": len(overlaps), f"mean_top{k}_overlap": float(np.mean(overlaps)) if overlaps else None,
            "top1_agreement": float(np.mean(top1)) if top1 else None}
