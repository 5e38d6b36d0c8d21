"""The train/serve contract: prompt template, tag vocabulary and output parsing.

Why one module: the trainer writes examples with these functions and the torch-free runtime reads
the model with the same ones. If they ever disagree, tags are read from the wrong logits and
rewrites are parsed wrongly, silently. ``PROMPT_VERSION`` is written into every exported model's
manifest, and the runtime refuses a model built for another version.

One plain-text format serves both tasks of the multi-task model (no chat template and no
instructions: a fine-tuned model needs neither, and every prompt token costs latency; a runtime in
any language can rebuild it byte for byte):

* rewrite task: one sequence lists every rewrite, best first, so one greedy decode yields them all;
  ``none`` when the query needs no rewrite (the model's own trigger)::

      Query: {query}
      Rewrites:{completion = " " + "r1 ; r2 ; r3" (or " none") + EOS}

* tagging task (shares the prefix ``Query: {query}\n`` with the rewrite prompt, so a runtime can
  reuse its KV cache)::

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
from collections.abc import Sequence

PROMPT_VERSION = "qrw-prompt-2"

MAX_QUERY_CHARS = 200
"""Queries longer than this are cut (at a word boundary) before they enter a prompt."""
MAX_REWRITE_WORDS = 12
"""A rewrite longer than this is cut: rewrites are short product-vocabulary phrases."""
MAX_REWRITES = 4
"""At most this many rewrites are read from one generated list."""
REWRITE_SEPARATOR = ";"
"""Separates the rewrites of one generated list (written with a space on each side)."""
NO_REWRITE = "none"
"""The whole completion when the query needs no rewrite."""


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


def query_prefix(query: str) -> str:
    """The text both task prompts start with (a runtime may compute its KV cache once)."""
    return f"Query: {clip_query(query)}\n"


def rewrite_prompt(query: str) -> str:
    """The prompt whose continuation is the list of rewrites of ``query``."""
    return f"{query_prefix(query)}Rewrites:"


def _clean_rewrite(rewrite: str) -> str:
    """One rewrite as it may stand in a list: normalized, no separator inside, at most MAX_REWRITE_WORDS words."""
    text = normalize_text(rewrite.replace(REWRITE_SEPARATOR, " "))
    return " ".join(text.split(" ")[:MAX_REWRITE_WORDS])


def rewrite_completion(rewrites: str | Sequence[str]) -> str:
    """The training target for the rewrite task (EOS is appended by the trainer): " r1 ; r2" or " none"."""
    if isinstance(rewrites, str):
        rewrites = [rewrites]
    cleaned = [text for text in (_clean_rewrite(r) for r in rewrites) if text and text.casefold() != NO_REWRITE]
    return " " + (f" {REWRITE_SEPARATOR} ".join(cleaned) if cleaned else NO_REWRITE)


def tag_prompt(query: str, rewrite: str) -> str:
    """The prompt whose next token is the relevance tag of ``rewrite`` for ``query``."""
    return f"{query_prefix(query)}Rewrite: {clip_query(rewrite)}\nTag:"


def tag_completion(tag: Tag) -> str:
    """The training target for the tagging task (EOS is appended by the trainer)."""
    return tag.token


def parse_rewrites(generated: str, limit: int = MAX_REWRITES) -> list[str]:
    """Turn generated text into at most ``limit`` distinct rewrites ([] for ``none`` or empty output).

    Takes the first line, splits it at the separator, normalizes each part and cuts it to
    ``MAX_REWRITE_WORDS`` words. Callers never get an empty string to send to OpenSearch.
    """
    first_line = generated.split("\n", 1)[0]
    seen: set[str] = set()
    out: list[str] = []
    for part in first_line.split(REWRITE_SEPARATOR):
        text = _clean_rewrite(part)
        key = text.casefold()
        if not text or key == NO_REWRITE or key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) >= limit:
            break
    return out


def parse_rewrite(generated: str) -> str | None:
    """The first rewrite of generated text, or None (see ``parse_rewrites``)."""
    rewrites = parse_rewrites(generated, limit=1)
    return rewrites[0] if rewrites else None
