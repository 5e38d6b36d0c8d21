"""The comparison page: plain search against rewritten search, side by side, server-rendered.

Why server-rendered HTML with no JavaScript and no CDN: the sandbox must work offline, and a search
engineer should be able to read the page's source and see exactly which requests produced it. The
left column queries OpenSearch directly with the baseline body; the right column sends the same body
through the rewriting proxy with explain on, and shows each rewrite with its tag, probability and
action, and on each hit the rewrite(s) that found it (from ``matched_queries``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import time
from pathlib import Path
from urllib.parse import quote_plus

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from qrw.search.baseline import DEFAULT_BASELINE

EXPLAIN_HEADER = "X-QRW-Explain"
RESULT_SIZE = 10
MAX_QUERY_CHARS = 500


@dataclasses.dataclass(frozen=True)
class PageSettings:
    opensearch_url: str
    proxy_url: str
    index: str = "products"
    judgments: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    timeout_s: float = 10.0


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 1rem} form{margin-bottom:1rem}
input[type=text]{width:28rem;padding:.4rem;font-size:1rem} button{padding:.4rem 1rem;font-size:1rem}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1.2rem}
.col{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8rem}
.col h2{font-size:1.05rem;margin:.2rem 0 .6rem} .meta{color:#666;font-size:.85rem;margin-bottom:.5rem}
ol{padding-left:1.4rem} li{margin:.35rem 0} .title{font-weight:600}
.by{font-size:.75rem;color:#555} .grade{font-size:.75rem;padding:0 .3rem;border-radius:3px;margin-left:.3rem}
.g3{background:#c8f0c8}.g2{background:#e4f5c8}.g1{background:#f7ecc4}.g0{background:#f6caca}.gn{background:#eee}
table.rw{border-collapse:collapse;font-size:.85rem;margin-bottom:.6rem;width:100%}
table.rw td,table.rw th{border-bottom:1px solid #eee;padding:.2rem .4rem;text-align:left}
.kept{color:#176b17}.down{color:#8a6d00}.dropped{color:#a11;text-decoration:line-through}
.err{color:#a11}
"""


def _grade_badge(settings: PageSettings, query: str, doc_id: str) -> str:
    judged = settings.judgments.get(query.strip().lower())
    if judged is None:
        return ""
    grade = judged.get(doc_id)
    if grade is None:
        return '<span class="grade gn" title="not judged">unjudged</span>'
    return f'<span class="grade g{grade}" title="judged grade">grade {grade}</span>'


def _hits_html(settings: PageSettings, query: str, response: dict, show_provenance: bool) -> str:
    items = []
    for hit in response.get("hits", {}).get("hits", []):
        source = hit.get("_source") or {}
        title = html.escape(str(source.get("title", hit.get("_id"))))
        supplier = html.escape(str(source.get("supplier", "")))
        provenance = ""
        if show_provenance:
            names = hit.get("matched_queries") or []
            if isinstance(names, dict):
                names = list(names)
            labels = [html.escape(n) for n in names]
            provenance = f'<div class="by">found by: {", ".join(labels) or "—"}</div>'
        items.append(
            f'<li><span class="title">{title}</span> <span class="by">{supplier} · id {html.escape(hit["_id"])}</span>'
            f"{_grade_badge(settings, query, hit['_id'])}{provenance}</li>"
        )
    return f"<ol>{''.join(items)}</ol>" if items else "<p>No hits.</p>"


def _action_class(action: str) -> str:
    action = action.lower()
    if action.startswith("drop"):
        return "dropped"
    if "down" in action or "boost" in action:
        return "down"
    return "kept"


def _explain_html(explain: dict | None) -> str:
    if not explain:
        return '<p class="meta">No rewrite explanation returned.</p>'
    rows = []
    for item in explain.get("rewrites", []):
        probability = item.get("probability")
        probability_text = "" if probability is None else f"{float(probability):.2f}"
        weight = item.get("weight")
        weight_text = "" if weight is None else f"{float(weight):.2f}"
        action = str(item.get("action", ""))
        rows.append(
            f'<tr class="{_action_class(action)}"><td>{html.escape(str(item.get("text", "")))}</td>'
            f"<td>{html.escape(str(item.get('tag', '')))}</td><td>{probability_text}</td>"
            f"<td>{html.escape(action)}</td><td>{weight_text}</td>"
            f"<td>{html.escape(str(item.get('source', '')))}</td></tr>"
        )
    model = explain.get("model") or {}
    notes = "".join(
        f'<p class="meta">{html.escape(str(n))}</p>'
        for n in (explain.get("reason"), model.get("error") and f"model: {model['error']}") if n
    )
    table = (
        '<table class="rw"><tr><th>rewrite</th><th>tag</th><th>p</th><th>action</th><th>weight</th><th>from</th></tr>'
        + "".join(rows)
        + "</table>"
        if rows
        else '<p class="meta">The rewriter proposed no rewrite for this query.</p>'
    )
    return table + notes


def _search_body(query: str) -> dict:
    body = DEFAULT_BASELINE.build(query)
    body.update({"size": RESULT_SIZE, "_source": ["title", "supplier", "id"]})
    return body


async def _timed_post(client: httpx.AsyncClient, url: str, body: dict, headers: dict | None = None):
    started = time.perf_counter()
    response = await client.post(url, json=body, headers=headers or {})
    return response, (time.perf_counter() - started) * 1000.0


def build_app(settings: PageSettings) -> Starlette:
    """The page as an ASGI app; one shared httpx client opened in the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient(timeout=settings.timeout_s) as client:
            app.state.http = client
            yield

    async def page(request: Request) -> HTMLResponse:
        query = (request.query_params.get("q") or "").strip()[:MAX_QUERY_CHARS]
        form = (
            '<form method="get" action="/"><input type="text" name="q" autofocus placeholder="search the catalog, e.g. laptop"'
            f' value="{html.escape(query)}"> <button type="submit">Search</button></form>'
        )
        body = f"<h1>qrw sandbox — plain search vs. relevance-gated rewriting</h1>{form}"
        if query:
            body += await _columns(request.app.state.http, query)
        return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>qrw sandbox</title>"
                            f"<style>{STYLE}</style></head><body>{body}</body></html>")

    async def _columns(client: httpx.AsyncClient, query: str) -> str:
        search_body = _search_body(query)
        path = f"/{quote_plus(settings.index)}/_search"
        left = right = ""
        try:
            response, took = await _timed_post(client, settings.opensearch_url + path, search_body)
            data = response.json()
            if response.status_code != 200:
                raise RuntimeError(data.get("error", data))
            left = (f'<div class="meta">OpenSearch direct · {data["hits"]["total"]["value"]} hits · '
                    f"search {took:.0f} ms</div>{_hits_html(settings, query, data, False)}")
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a 500
            left = f'<p class="err">Plain search failed: {html.escape(str(exc))}</p>'
        try:
            response, took = await _timed_post(client, settings.proxy_url + path, search_body, {EXPLAIN_HEADER: "true"})
            data = response.json()
            if response.status_code != 200:
                raise RuntimeError(data.get("error", data))
            explain = data.get("qrw") or {}
            timings = explain.get("timings_ms") or {}
            rewrite_ms = timings.get("total")
            rewrite_text = "n/a" if rewrite_ms is None else f"{float(rewrite_ms):.0f} ms"
            right = (f'<div class="meta">through the qrw proxy · {data["hits"]["total"]["value"]} hits · '
                     f"rewrite {rewrite_text} · total {took:.0f} ms</div>"
                     f"{_explain_html(explain)}{_hits_html(settings, query, data, True)}")
        except Exception as exc:  # noqa: BLE001
            right = f'<p class="err">Rewritten search failed: {html.escape(str(exc))}</p>'
        judged = " (judged query: grades shown)" if query.lower() in settings.judgments else ""
        return (f'<div class="cols"><div class="col" id="original"><h2>Original query{judged}</h2>{left}</div>'
                f'<div class="col" id="rewritten"><h2>Rewritten (gated OR-merge)</h2>{right}</div></div>')

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", page), Route("/healthz", health)], lifespan=lifespan)


def load_page_judgments(path: Path | None) -> dict[str, dict[str, int]]:
    if path is None or not Path(path).is_file():
        return {}
    from qrw.eval.judgments import load_judgments

    return {query.lower(): grades for query, grades in load_judgments(path).items()}


def serve_page(settings: PageSettings, host: str, port: int) -> None:
    """Run the page with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(build_app(settings), host=host, port=port, log_level="warning")
