"""The comparison page: plain search against rewritten search, side by side, server-rendered.

Why server-rendered HTML with no JavaScript and no CDN: the sandbox must work offline, and a search
engineer should be able to read the page's source and see exactly which requests produced it. Both
columns send the profile's baseline body through the one search path (``qrw.search.runner``): the
left one to OpenSearch, the right one to the rewriting proxy with explain on. The page explains
itself: a legend, and for every rewrite its tag probabilities, what happened to it (full weight,
down-weighted, dropped) and why (the gate's thresholds, a guard, a merchandiser's rule), plus the
hits it brought into the top 10 (found by that rewrite's clause and not by the original query).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from qrw.errors import QrwError
from qrw.search.profile import IndexProfile, load_profile
from qrw.search.runner import Ranking, search_many

EXPLAIN_HEADERS = {"X-QRW-Explain": "true"}
ORIGINAL_CLAUSE = "qrw:original"
REWRITE_CLAUSE = "qrw:rewrite:"
RESULT_SIZE = 10
MAX_QUERY_CHARS = 500
TAG_ORDER = ("exact", "substitute", "weak", "irrelevant")


@dataclasses.dataclass(frozen=True)
class PageSettings:
    opensearch_url: str
    proxy_url: str
    index: str | None = None
    """Index or alias searched; None means the profile's index."""
    judgments: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    timeout_s: float = 10.0
    profile: IndexProfile = dataclasses.field(default_factory=load_profile)

    @property
    def target(self) -> str:
        return self.index or self.profile.index


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
.new{font-size:.7rem;background:#dde9ff;padding:0 .3rem;border-radius:3px;margin-left:.3rem}
table.rw{border-collapse:collapse;font-size:.8rem;margin-bottom:.6rem;width:100%}
table.rw td,table.rw th{border-bottom:1px solid #eee;padding:.2rem .3rem;text-align:left;vertical-align:top}
.kept{color:#176b17}.down{color:#8a6d00}.dropped{color:#a11}.dropped .text{text-decoration:line-through}
.why{color:#555;font-size:.75rem}
.err{color:#a11}
details.legend{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;margin-bottom:1rem;font-size:.85rem}
details.legend dt{font-weight:600;margin-top:.3rem} details.legend dd{margin-left:1rem}
pre{font-size:.75rem;white-space:pre-wrap}
"""

LEGEND = f"""
<details class="legend" id="legend" open><summary>How to read this page</summary><dl>
<dt>Left: Original query</dt><dd>the profile's baseline query sent straight to OpenSearch.</dd>
<dt>Right: Rewritten</dt><dd>the same request sent through the qrw proxy. The model writes rewrites of the query;
each rewrite is OR-merged into the query as an extra clause, at full weight or down-weighted, or dropped.</dd>
<dt>tag probabilities</dt><dd>the model's own judgement of each (query, rewrite) pair:
<b>exact</b> (same product), <b>substitute</b> (would do instead), <b>weak</b> (related), <b>irrelevant</b>.</dd>
<dt>action</dt><dd><span class="kept">full</span>: merged at full weight;
<span class="down">down</span>: merged with a lower boost (weight &lt; 1);
<span class="dropped">drop</span>: not used. Under the default <code>merge.mode: confident</code> only full-weight
rewrites, rules and respellings of the query may bring in products the query does not match; other
down-weighted ones only reorder what the query finds.</dd>
<dt>why</dt><dd><b>gate</b>: the tag probabilities against the gate's thresholds (full_min, keep_min);
<b>guard</b>: a safety check dropped it (copies the query, adds a brand or number, loses a negation, names another product after the query, or, when turned on, loses a brand or number);
<b>rule</b>: a merchandiser's rule (file:line) pinned or blocked it, for queries matching the rule's trigger.</dd>
<dt>brought in</dt><dd>hits in the rewritten top {RESULT_SIZE} found by that rewrite's clause and not by the original query
(hits marked <span class="new">new</span> are not in the left column's top {RESULT_SIZE}).</dd>
<dt>found by</dt><dd>the clauses each hit matched: <code>{ORIGINAL_CLAUSE}</code> is the user's query,
<code>{REWRITE_CLAUSE}N</code> the N-th kept rewrite.</dd>
<dt>grade</dt><dd>for judged queries, the judged grade of each hit (3 exact … 0 irrelevant; unjudged = not judged).</dd>
</dl></details>
"""


def _grade_badge(settings: PageSettings, query: str, doc_id: str) -> str:
    judged = settings.judgments.get(query.strip().lower())
    if judged is None:
        return ""
    grade = judged.get(doc_id)
    if grade is None:
        return '<span class="grade gn" title="not judged">unjudged</span>'
    return f'<span class="grade g{grade}" title="judged grade">grade {grade}</span>'


def _label(name: str) -> str:
    if name == ORIGINAL_CLAUSE:
        return "original query"
    if name.startswith(REWRITE_CLAUSE):
        return f"rewrite {int(name[len(REWRITE_CLAUSE):]) + 1}"
    return name


def _clause_order(name: str) -> tuple[int, int, str]:
    """The original query first, then rewrites by number, then anything else."""
    if name == ORIGINAL_CLAUSE:
        return (0, 0, name)
    if name.startswith(REWRITE_CLAUSE) and name[len(REWRITE_CLAUSE):].isdigit():
        return (1, int(name[len(REWRITE_CLAUSE):]), name)
    return (2, 0, name)


def _hits_html(settings: PageSettings, query: str, ranking: Ranking, show_provenance: bool,
               baseline_ids: frozenset[str] = frozenset(), rewritten: bool = True) -> str:
    profile = settings.profile
    items = []
    for doc_id in ranking.ids[:RESULT_SIZE]:
        source = ranking.sources.get(doc_id, {})
        item = profile.item(source, doc_id)
        title = html.escape(item.title or doc_id)
        brand = f"{html.escape(item.brand)} · " if item.brand else ""
        provenance = new = ""
        if show_provenance:
            names = sorted(ranking.matched.get(doc_id, []), key=_clause_order)
            labels = [html.escape(_label(n)) for n in names]
            if not labels and not rewritten:
                labels = ["original query (no rewrite merged)"]
            provenance = f'<div class="by">found by: {", ".join(labels) or "—"}</div>'
            if doc_id not in baseline_ids:
                new = f'<span class="new" title="not in the original top {RESULT_SIZE}">new</span>'
        items.append(
            f'<li><span class="title">{title}</span> <span class="by">{brand}id {html.escape(doc_id)}</span>'
            f"{_grade_badge(settings, query, doc_id)}{new}{provenance}</li>"
        )
    return f"<ol>{''.join(items)}</ol>" if items else "<p>No hits.</p>"


def _action_class(action: str) -> str:
    action = action.lower()
    if action.startswith("drop"):
        return "dropped"
    if action == "down":
        return "down"
    return "kept"


def respelled_word(typed: str, fixed: str) -> str:
    """One change of an index respelling, as the page says it: a split compound joined, or a word fixed."""
    if " " in typed.strip() and "".join(typed.split()).casefold() == fixed.casefold():
        return f"{typed} → {fixed} (joined: the catalog writes it as one word)"
    return f"{typed} → {fixed} (a word the index does not hold, corrected by its term suggester)"


def why(item: dict) -> str:
    """Who decided a rewrite's fate, and on what grounds: gate, guard or rule."""
    dropped_by = str(item.get("dropped_by") or "")
    if dropped_by.startswith("guards:"):
        return "guard: " + dropped_by.split(":", 1)[1].strip()
    if dropped_by.startswith("rules:"):
        return "rule: " + dropped_by.split(":", 1)[1].strip()
    if dropped_by:
        return dropped_by
    if item.get("rule"):
        return f"rule {item['rule']}: pinned at weight {item.get('weight')}"
    if item.get("reason") and item.get("served_as"):
        return f"gate: {item['reason']}; served at the larger weight of the {item['served_as']}"
    if item.get("reason"):
        return f"gate: {item['reason']}"
    return ""


def brought_in(ranking: Ranking, name: str | None) -> list[int]:
    """1-based ranks of the top hits that ``name``'s clause found and the original query did not."""
    if not name:
        return []
    return [rank for rank, doc_id in enumerate(ranking.ids[:RESULT_SIZE], start=1)
            if name in ranking.matched.get(doc_id, []) and ORIGINAL_CLAUSE not in ranking.matched.get(doc_id, [])]


def _explain_html(explain: dict | None, ranking: Ranking) -> str:
    if not explain:
        return '<p class="meta">No rewrite explanation returned (is explain enabled on the proxy?).</p>'
    rows = []
    for item in explain.get("rewrites", []):
        probabilities = item.get("probabilities") or {}
        cells = "".join(f"<td>{float(probabilities[t]):.2f}</td>" if t in probabilities else "<td>–</td>" for t in TAG_ORDER)
        weight = item.get("weight")
        action = str(item.get("action", ""))
        ranks = brought_in(ranking, item.get("name"))
        rows.append(
            f'<tr class="{_action_class(action)}"><td class="text">{html.escape(str(item.get("text", "")))}</td>'
            f"<td>{html.escape(str(item.get('tag', '')))}</td>{cells}"
            f"<td>{html.escape(action)}</td><td>{'' if weight is None else f'{float(weight):.2f}'}</td>"
            f'<td class="why">{html.escape(why(item))}</td>'
            f"<td>{', '.join(f'#{r}' for r in ranks) or '—'}</td>"
            f"<td>{html.escape(str(item.get('source', '')))}</td></tr>"
        )
    model = explain.get("model") or {}
    recovery = explain.get("recovery") or {}
    recovered = recovery and (
        f"the search found nothing, so it was sent again with fuzzy text clauses ({recovery.get('fuzziness')}): "
        f"{recovery.get('hits', 0)} hits" + ("" if recovery.get("hits") else ", the empty answer stands"))
    respelling = explain.get("respelling") or {}
    respelled = respelling and (
        "the index respelled the query: "
        + ", ".join(respelled_word(typed, fixed) for typed, fixed in respelling.get("words", []))
        + f"; served as “{respelling.get('text')}” at weight {float(respelling.get('weight', 0)):.2f}"
        + ("; the rewriter read the corrected text" if explain.get("query") == respelling.get("text") else ""))
    notes = "".join(
        f'<p class="meta">{html.escape(str(n))}</p>'
        for n in (explain.get("reason"), model.get("error") and f"model: {model['error']}", respelled, recovered) if n
    )
    head = "".join(f"<th>P({t[:3]})</th>" for t in TAG_ORDER)
    table = (
        f'<table class="rw"><tr><th>rewrite</th><th>tag</th>{head}<th>action</th><th>weight</th><th>why</th>'
        f"<th>brought in</th><th>from</th></tr>" + "".join(rows) + "</table>"
        if rows
        else '<p class="meta">The rewriter proposed no rewrite for this query.</p>'
    )
    origin = model.get("origin")
    origin_text = f'<p class="meta">model output from: {html.escape(str(origin))}</p>' if origin else ""
    return table + origin_text + notes


def search_body(profile: IndexProfile, query: str) -> dict:
    """The request both columns send: the profile's baseline query for ``query``."""
    return profile.baseline.build(query)


def build_app(settings: PageSettings) -> Starlette:
    """The page as an ASGI app; the two search clients are opened in the lifespan."""
    from qrw.search.connect import open_client

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.direct = open_client(settings.opensearch_url, timeout=settings.timeout_s, check=False)
        app.state.proxy = open_client(settings.proxy_url, timeout=settings.timeout_s, check=False)
        try:
            yield
        finally:
            app.state.direct.close()
            app.state.proxy.close()

    async def page(request: Request) -> HTMLResponse:
        query = (request.query_params.get("q") or "").strip()[:MAX_QUERY_CHARS]
        form = (
            '<form method="get" action="/"><input type="text" name="q" autofocus placeholder="search the catalog, e.g. laptop"'
            f' value="{html.escape(query)}"> <button type="submit">Search</button></form>'
        )
        body = (f"<h1>qrw sandbox — plain search vs. relevance-gated rewriting "
                f"<span class='meta'>(profile {html.escape(settings.profile.name)}, index {html.escape(settings.target)})</span></h1>"
                f"{form}{LEGEND}")
        if query:
            body += await _columns(request.app.state, query)
        return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>qrw sandbox</title>"
                            f"<style>{STYLE}</style></head><body>{body}</body></html>")

    async def _search(client, query: str, headers: dict | None) -> tuple[Ranking, float]:
        fields = [settings.profile.title_field] + ([settings.profile.brand_field] if settings.profile.brand_field else [])
        if settings.profile.id_field != "_id":
            fields.append(settings.profile.id_field)
        started = time.perf_counter()
        rankings = await run_in_threadpool(search_many, client, settings.target, {"q": search_body(settings.profile, query)},
                                           depth=RESULT_SIZE, source=fields, headers=headers)
        return rankings["q"], (time.perf_counter() - started) * 1000.0

    async def _columns(state, query: str) -> str:
        left = right = ""
        baseline_ids: frozenset[str] = frozenset()
        try:
            ranking, took = await _search(state.direct, query, None)
            baseline_ids = frozenset(ranking.ids[:RESULT_SIZE])
            left = (f'<div class="meta">OpenSearch direct · {ranking.total} hits · search {took:.0f} ms</div>'
                    f"{_hits_html(settings, query, ranking, False)}")
        except (QrwError, OSError) as exc:
            left = f'<p class="err">Plain search failed: {html.escape(str(exc))}</p>'
        try:
            ranking, took = await _search(state.proxy, query, EXPLAIN_HEADERS)
            explain = ranking.explain or {}
            rewrite_ms = (explain.get("timings_ms") or {}).get("total")
            rewrite_text = "n/a" if rewrite_ms is None else f"{float(rewrite_ms):.0f} ms"
            right = (f'<div class="meta">through the qrw proxy · {ranking.total} hits · '
                     f"rewrite {rewrite_text} · total {took:.0f} ms</div>"
                     f"{_explain_html(explain, ranking)}"
                     f"{_hits_html(settings, query, ranking, True, baseline_ids, bool(explain.get('rewritten')))}")
        except (QrwError, OSError) as exc:
            right = f'<p class="err">Rewritten search failed: {html.escape(str(exc))}</p>'
        judged = " (judged query: grades shown)" if query.lower() in settings.judgments else ""
        request = html.escape(json.dumps(search_body(settings.profile, query)))
        return (f'<div class="cols"><div class="col" id="original"><h2>Original query{judged}</h2>{left}</div>'
                f'<div class="col" id="rewritten"><h2>Rewritten (gated OR-merge)</h2>{right}</div></div>'
                f'<details><summary class="meta">request body sent by both columns '
                f'(baseline {html.escape(settings.profile.baseline.name)})</summary><pre>{request}</pre></details>')

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
