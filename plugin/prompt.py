"""The train/serve contract: prompt template, tag vocabulary and output parsing.

Why one module: the trainer writes examples with these functions and the torch-free runtime reads
the model with the same ones. If they ever disagree, tags are read from the wrong logits and
rewrites are parsed wrongly, silently. ``PROMPT_VERSION`` is written into every exported model's
manifest, and the runtime refuses a model built for another version.

One plain-text format serves both tasks of the multi-task model (no chat template, so a runtime in
any language can rebuild it byte for byte):

* rewrite task::

      Task: rewrite
      Query: {query}
      Rewrite:{completion = " " + rewrite + EOS}

* tagging task::

      Task: tag
      Query: {query}
      Rewrite: {rewrite}
      Tag:{completion = tag token + EOS}

Each tag is a single digit, aligned with the catalog's 0-3 grades, so a runtime reads the
probability of every tag from one forward pass over the tagging prompt (softmax restricted to the
four tag token ids at the last position).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata

PROMPT_VERSION = "qrw-prompt-1"

MAX_QUERY_CHARS = 200
"""Queries longer than this are cut (at a word boundary) before they enter a prompt."""
MAX_REWRITE_WORDS = 12
"""A rewrite longer than this is cut: rewrites are short product-vocabulary phrases."""


@dataclasses.dataclass(frozen=True)
class Tag:
    """One relevance tag: its name, its single-token text, and the judged grade it stands for."""

    name: str
    token: str
    grade: int


TAGS: tuple[Tag, ...] = (
    Tag("exact", "3", 3),  # the rewrite retrieves what the query asks for
    Tag("substitute", "2", 2),  # close: same need, other model/brand/variant (grade 2)
    Tag("weak", "1", 1),  # related but mostly not what was asked (accessory, other type)
    Tag("irrelevant", "0", 0),  # drifted: wrong product type, brand or number
)
TAG_BY_NAME = {tag.name: tag for tag in TAGS}
TAG_BY_TOKEN = {tag.token: tag for tag in TAGS}


def tag_for_grade(grade: float) -> Tag:
    """Map a (possibly averaged) 0-3 grade to the nearest tag; 2.5 and up is exact."""
    if grade >= 2.5:
        return TAG_BY_NAME["exact"]
    if grade >= 1.5:
        return TAG_BY_NAME["substitute"]
    if grade >= 0.75:
        return TAG_BY_NAME["weak"]
    return TAG_BY_NAME["irrelevant"]


_SPACES = re.compile(r"\s+")
_CONTROL = dict.fromkeys(i for i in range(32) if i not in (9, 10, 13))


def normalize_text(text: str) -> str:
    """NFC, no control characters, single spaces, stripped. Newlines would break the template."""
    text = unicodedata.normalize("NFC", text).translate(_CONTROL)
    return _SPACES.sub(" ", text).strip()


def clip_query(query: str) -> str:
    """Normalize and cut to ``MAX_QUERY_CHARS`` at a word boundary."""
    query = normalize_text(query)
    if len(query) <= MAX_QUERY_CHARS:
        return query
    cut = query[:MAX_QUERY_CHARS]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def rewrite_prompt(query: str) -> str:
    """The prompt whose continuation is one rewrite of ``query``."""
    return f"Task: rewrite\nQuery: {clip_query(query)}\nRewrite:"


def rewrite_completion(rewrite: str) -> str:
    """The training target for the rewrite task (EOS is appended by the trainer)."""
    return " " + normalize_text(rewrite)


def tag_prompt(query: str, rewrite: str) -> str:
    """The prompt whose next token is the relevance tag of ``rewrite`` for ``query``."""
    return f"Task: tag\nQuery: {clip_query(query)}\nRewrite: {clip_query(rewrite)}\nTag:"


def tag_completion(tag: Tag) -> str:
    """The training target for the tagging task (EOS is appended by the trainer)."""
    return tag.token


def parse_rewrite(generated: str) -> str | None:
    """Turn generated text into one rewrite, or None if nothing usable came out.

    Takes the first line, normalizes spaces, and cuts to ``MAX_REWRITE_WORDS`` words. Returns None
    for empty output so callers never send an empty clause to OpenSearch.
    """
    first_line = generated.split("\n", 1)[0]
    text = normalize_text(first_line)
    if not text:
        return None
    words = text.split(" ")
    return " ".join(words[:MAX_REWRITE_WORDS])
