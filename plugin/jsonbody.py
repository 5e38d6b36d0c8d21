"""Reading and writing search bodies without changing what the client meant.

Why not plain ``json.loads``/``json.dumps`` (or orjson) on every body: OpenSearch's parser (Jackson)
and Python's disagree at the edges, and a proxy that re-serialises a body it only passes along turns
those disagreements into wrong answers:

* duplicate keys: Jackson refuses them (400); ``json.loads`` keeps the last one silently;
* ``1e400``: Jackson reads a huge double; Python reads ``inf`` and writes ``Infinity`` (a 400);
  orjson refuses it, and turns integers above 64 bits into floats;
* ``"\\ud800"`` (a lone surrogate escape): Jackson accepts it; a Python string holding it cannot be
  encoded as UTF-8, and orjson refuses it;
* ``/* comments */``: OpenSearch enables Jackson's ALLOW_COMMENTS; Python has no such option;
* ``NaN`` / ``Infinity`` literals: Python accepts them, Jackson refuses them.

So the proxy parses with ``loads_faithful`` (which refuses what it cannot give back unchanged), and
bodies it does not change are forwarded as the client's bytes. Only a body that is really rewritten
is serialised again, by ``dumps``: orjson when it can represent the value exactly, else the standard
library with ASCII escapes (lone surrogates come out as the ``\\ud800`` escape they came in as) and
out-of-range numbers written back as their original literal.

``max_depth`` measures nesting on the raw bytes, before any parser recurses into it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any

import orjson

__all__ = ["Unfaithful", "BigNumber", "loads_faithful", "dumps", "max_depth"]


class Unfaithful(ValueError):
    """The body parses in Python but could not be written back with the same meaning (pass it along raw)."""


class BigNumber:
    """A number literal outside the double range (``1e400``), kept as the client wrote it."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigNumber) and other.literal == self.literal

    def __hash__(self) -> int:
        return hash(self.literal)

    def __repr__(self) -> str:
        return f"BigNumber({self.literal})"


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise Unfaithful(f"duplicate key {duplicate!r}")
    return result


def _constant(name: str) -> Any:
    raise Unfaithful(f"non-standard number {name}")


def _float(literal: str) -> Any:
    value = float(literal)
    if math.isinf(value):
        return BigNumber(literal)
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)

# One token of JSON text that may hold a comment: a string (kept), or a comment (replaced by a space).
_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|/\*.*?\*/|//[^\n\r]*', re.DOTALL)


def _strip_comments(text: str) -> str:
    return _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)


def loads_faithful(raw: bytes | str) -> Any:
    """Parse JSON as OpenSearch would read it, or raise ``ValueError`` (``Unfaithful``, decode errors).

    Only strict UTF-8 is read (anything else goes to OpenSearch untouched). ``/* */`` and ``//``
    comments are accepted like OpenSearch does; integers stay exact; doubles out of range become
    ``BigNumber``.
    """
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        if "/" not in text:
            raise
        return _DECODER.decode(_strip_comments(text))


_PLACEHOLDER = f"qrw-literal-{secrets.token_hex(12)}-"


def dumps(value: Any) -> bytes:
    """Compact JSON bytes for a (re-written) body, preserving literals ``loads_faithful`` kept."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass  # BigNumber, integers beyond 64 bits, lone surrogates: orjson refuses them (JSONEncodeError)
    literals: list[str] = []

    def literal(obj: Any) -> str:
        if isinstance(obj, BigNumber):
            literals.append(obj.literal)
            return f"{_PLACEHOLDER}{len(literals) - 1}"
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=literal)
    for i, lit in enumerate(literals):
        text = text.replace(f'"{_PLACEHOLDER}{i}"', lit, 1)
    return text.encode("ascii")


# Depth on raw bytes: drop string literals (brackets inside them do not nest), keep only brackets.
_STRING_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def max_depth(raw: bytes) -> int:
    """The deepest nesting of ``{}``/``[]`` in ``raw`` (strings ignored). Cheap when the body is shallow."""
    brackets = _STRING_BYTES.sub(b"", raw).translate(None, _NOT_BRACKETS)
    openings = brackets.count(b"{") + brackets.count(b"[")
    if openings <= 1:
        return openings
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def deeper_than(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` nests deeper than ``limit``, without a full scan when it cannot."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    return max_depth(raw) > limit
