"""``_msearch`` framing read exactly as OpenSearch reads it, so the proxy can rewrite single lines.

Why a framing module: OpenSearch's ``MultiSearchRequest.readMultiLineFormat`` has rules a
``split("\\n")`` gets wrong, and each one changes what a request means:

* the body must end with ``\\n``, else the whole request is a 400;
* one leading ``\\n`` (at byte 0 only) is skipped; every other empty line is an empty header or body;
* a header line is read as a map, and a header that is not a JSON object (``1``, ``[]``, ``"x"``)
  counts as an empty one; a header that does not parse fails the request;
* a trailing header without a body line is ignored.

``split`` returns the (header, body) line spans; ``join`` puts back the client's bytes with only the
replaced body lines changed. When OpenSearch would refuse the framing, ``split`` returns None and the
proxy forwards the body untouched, so the client gets OpenSearch's own error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from qrw.plugin.jsonbody import loads_faithful


@dataclasses.dataclass(frozen=True)
class Item:
    header: dict
    """The header as OpenSearch reads it (a non-object header is ``{}``)."""
    body_start: int
    body_end: int
    """The body line is ``raw[body_start:body_end]`` (without its newline)."""


def split(raw: bytes) -> list[Item] | None:
    """The search items of an msearch body, or None when OpenSearch would refuse its framing or a header."""
    if raw and not raw.endswith(b"\n"):
        return None
    items: list[Item] = []
    position = 0
    size = len(raw)
    while position < size:
        newline = raw.find(b"\n", position)
        if newline == -1:
            break
        if newline == 0:
            position = 1
            continue
        header_line = raw[position:newline]
        position = newline + 1
        body_end = raw.find(b"\n", position)
        if body_end == -1:
            break  # a header without a body: OpenSearch ignores it
        header: dict = {}
        if header_line.strip():
            try:
                parsed = loads_faithful(header_line)
            except ValueError:
                return None
            header = parsed if isinstance(parsed, Mapping) else {}
        items.append(Item(header, position, body_end))
        position = body_end + 1
    return items


def join(raw: bytes, items: list[Item], replacements: dict[int, bytes]) -> bytes:
    """``raw`` with the body line of ``items[i]`` replaced by ``replacements[i]``; every other byte kept."""
    if not replacements:
        return raw
    parts: list[bytes] = []
    position = 0
    for i in sorted(replacements):
        item = items[i]
        parts.append(raw[position:item.body_start])
        parts.append(replacements[i])
        position = item.body_end
    parts.append(raw[position:])
    return b"".join(parts)


def target_index(header: Mapping, default: str | None) -> str | None:
    """The indices a header names (``index`` as a string or a list), else the URL's."""
    value = header.get("index", header.get("indices", default))
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value if isinstance(value, str) else default
