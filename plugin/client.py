"""Drop-in for opensearch-py: an ``OpenSearch`` client whose ``search`` and ``msearch`` rewrite.

``RewritingOpenSearch`` *is* an ``opensearchpy.OpenSearch`` (same constructor, same transport, same
namespaced sub-clients); only ``search`` and ``msearch`` pass their body through the engine before
calling the parent. Every other API is inherited untouched. Explain: pass the header
``X-QRW-Explain: true`` (``headers={...}``) or put ``"ext": {"qrw": {"explain": true}}`` in the body;
the report is added to the response under ``"qrw"`` (for msearch, in each response).

    from qrw.plugin import RewritingOpenSearch
    client = RewritingOpenSearch(hosts=["http://127.0.0.1:9200"], model=my_model, rules=load_rules("rules.txt"))
    client.search(index="products", body={"query": {"match": {"title": "laptop"}}})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opensearchpy import OpenSearch

from qrw.plugin.config import PluginConfig
from qrw.plugin.engine import RewriteEngine, truthy
from qrw.plugin.model import RewriteModel
from qrw.plugin.rules import RuleSet

EXPLAIN_HEADER = "X-QRW-Explain"


def _index_text(index: Any) -> str | None:
    if index is None:
        return None
    if isinstance(index, (list, tuple)):
        return ",".join(str(i) for i in index)
    return str(index)


def _explain_header(headers: Mapping | None) -> bool:
    if not headers:
        return False
    return any(key.lower() == EXPLAIN_HEADER.lower() and truthy(value) for key, value in headers.items())


def parse_msearch(body: Any) -> list[tuple[dict, Any]] | None:
    """An msearch body (list of dicts/JSON strings, or NDJSON str/bytes) as (header, body) pairs; None if unparseable."""
    try:
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8")
        if isinstance(body, str):
            items: list[Any] = [line for line in body.split("\n") if line.strip()]
        elif isinstance(body, (list, tuple)):
            items = list(body)
        else:
            return None
        items = [json.loads(item) if isinstance(item, (str, bytes)) else item for item in items]
    except (ValueError, UnicodeDecodeError):
        return None
    if len(items) % 2 or not all(isinstance(item, Mapping) for item in items):
        return None
    return [(dict(items[i]), items[i + 1]) for i in range(0, len(items), 2)]


class RewritingOpenSearch(OpenSearch):
    """An ``OpenSearch`` client that rewrites ``search`` and ``msearch`` through a ``RewriteEngine``."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        engine: RewriteEngine | None = None,
        config: PluginConfig | None = None,
        model: RewriteModel | None = None,
        rules: RuleSet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, **kwargs)
        self.qrw = engine if engine is not None else RewriteEngine(config, model, rules)

    def search(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        explain = _explain_header(headers)
        parsed = body
        if isinstance(body, (str, bytes)):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
        new_body, report = self.qrw.rewrite_body(parsed, index=_index_text(index), explain=explain)
        if new_body is parsed and parsed is not body:
            new_body = body  # unparseable or untouched text body: send the caller's bytes as they were
        response = super().search(body=new_body, index=index, params=params, headers=headers, **kwargs)
        if report is not None and isinstance(response, dict):
            response = {**response, "qrw": report}
        return response

    def msearch(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        pairs = parse_msearch(body)
        if pairs is None:
            return super().msearch(body=body, index=index, params=params, headers=headers, **kwargs)
        rewritten, reports = self.qrw.rewrite_msearch(pairs, index=_index_text(index), explain=_explain_header(headers))
        lines: list[Any] = [item for pair in rewritten for item in pair]
        response = super().msearch(body=lines, index=index, params=params, headers=headers, **kwargs)
        if any(r is not None for r in reports) and isinstance(response, dict) and isinstance(response.get("responses"), list):
            responses = [
                {**item, "qrw": report} if report is not None and isinstance(item, dict) else item
                for item, report in zip(response["responses"], reports)
            ]
            response = {**response, "responses": responses}
        return response

    def close(self) -> None:
        self.qrw.close()
        super().close()
