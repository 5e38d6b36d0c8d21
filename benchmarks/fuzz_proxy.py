"""Fuzz comparison: generated request bodies, each sent through the proxy and straight to OpenSearch.

What it generates (seeded, ``--cases`` of them, default 10,000), in these families:

* ``structure``: search bodies from a grammar (match, multi_match, combined_fields, query_string,
  simple_query_string, bool nesting, function_score, dis_max, boosting, filters, aggregations, sort,
  paging, highlight, ``_source``, ``_name``, ``lenient``, ``zero_terms_query``, ``min_score``), texts
  drawn from a vocabulary that is partly in the proxy's rewrite table (so about half get rewritten);
* ``unicode``: query texts with JSON escapes of lone surrogates, NUL, emoji, RTL, combining marks,
  raw invalid UTF-8, a UTF-8 BOM;
* ``numbers``: ``size``/``from``/``boost``/``min_score`` as 1e400, -0, 1e-400, 20-digit integers, 1.0e1;
* ``sizes``: long texts (up to 300 KB), wide bool queries, large ``_source`` lists;
* ``encoding``: gzip- and deflate-encoded request bodies (with and without ``ext.qrw``), broken gzip,
  charset parameters;
* ``msearch``: framing: missing final newline, headers ``1``/``[]``/``"x"``, blank lines, a leading
  newline, ``\\r\\n``, odd line counts, ``ext.qrw`` in body lines;
* ``malformed``: truncated JSON, duplicate keys, trailing content, comments, NaN, single quotes;
* ``ext``: ``ext.qrw`` options of every type (explain, deadline_ms as strings, huge, negative);
* ``depth``: nesting under the proxy's ``max_json_depth`` (sent both ways) and over it (proxy only:
  sent straight to OpenSearch such a body can kill the node, which is the point of the limit);
* ``passthrough``: read-only non-search requests (``_count`` with bodies, ``_doc``, ``_mapping``,
  ``_analyze``, ``_cat``, HEAD, unknown endpoints), with and without ``accept-encoding: gzip``.

What it checks (the issue's criteria):

1. no 5xx made by the proxy itself (an error whose type is one of the proxy's, or a 5xx where
   OpenSearch answered below 500);
2. no case where OpenSearch answers 2xx and the proxy does not, except the documented depth limit;
3. no node death (cluster health after every batch; a dead node is counted and restarted);
4. passthrough requests: status, headers, encoding and body bytes equal to OpenSearch's (``took``
   normalised); search bodies the proxy did not rewrite and did not recover (zero-hit recovery; asked
   again with explain when the answers differ): same status and same body.

Usage: ``.venv/bin/python benchmarks/fuzz_proxy.py [--cases 10000] [--seed 0] [--json-out figures.json]``
(starts its own node with the catalog and a proxy process; about 2 requests per case).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import re
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadclient import Client, ClientError  # noqa: E402

DEPTH_LIMIT = 200
TOKEN = "fuzz-debug-token-0123456789abcdef"
QRW_ERROR_TYPES = {"qrw_proxy_exception", "qrw_internal_exception", "upstream_unavailable_exception",
                   "upstream_timeout_exception", "qrw_overloaded_exception"}
EXACT = {"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
SUBST = {"exact": 0.2, "substitute": 0.7, "weak": 0.1, "irrelevant": 0.0}
TABLE = {
    "laptop": [("notebook", EXACT), ("_", EXACT)],
    "usb stick": [("usb flash drive", EXACT), ("pendrive", SUBST)],
    "hp toner": [("hp laserjet toner", EXACT), ("title:hp OR *:*", EXACT)],
    "monitor": [("display screen", EXACT), ("--", EXACT)],
    "mouse": [("computer mouse", EXACT)],
    "printer": [("the", EXACT), ("laser printer", SUBST)],
    "kabel": [("cable", EXACT)],
    "écouteurs": [("earphones", EXACT)],
    "ssd 1tb": [("solid state drive 1tb", EXACT)],
    "camera": [("\"camera\"", EXACT)],
}
VOCAB = list(TABLE) + ["keyboard", "tablet case", "toner", "router", "headset", "cable 2m", "bag", "usb", "ink", "projector"]
FIELDS = ["title", "name", "supplier", "short_description", "attributes", "all_text"]
WEIRD_TEXT = ["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "😀", "עברית", "e\u0301", "\\\\", "\\\"", "日本語", "\u200b",
              "\\u001f", "ß", "İ", "\u2028"]


@dataclass
class Case:
    family: str
    method: str
    path: str
    body: bytes | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    over_limit: bool = False
    passthrough: bool = False


def j(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------


class Gen:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def text(self) -> str:
        r = self.r
        base = r.choice(VOCAB)
        if r.random() < 0.15:
            base = base.upper() if r.random() < 0.5 else f"  {base}  "
        return base

    def text_clause(self, text: str | None = None) -> dict:
        r = self.r
        text = text if text is not None else self.text()
        fields = r.sample(FIELDS, r.randint(1, 3))
        kind = r.choice(["match", "match", "multi_match", "multi_match", "combined_fields", "query_string", "simple_query_string"])
        if kind == "match":
            spec = text if r.random() < 0.4 else {"query": text, **self.match_options()}
            clause = {"match": {fields[0]: spec}}
        elif kind == "multi_match":
            clause = {"multi_match": {"query": text, "fields": fields, **self.multi_options()}}
        elif kind == "combined_fields":
            clause = {"combined_fields": {"query": text, "fields": [f for f in fields if f not in ("supplier", "name")] or ["title"]}}
        else:
            spec = {"query": text, "fields": fields + (["price"] if r.random() < 0.2 else [])}
            if r.random() < 0.4:
                spec["lenient"] = True
            if r.random() < 0.2:
                spec["default_operator"] = r.choice(["AND", "or"])
            clause = {kind: spec}
        if r.random() < 0.15:
            inner = next(iter(clause.values()))
            target = next(iter(inner.values())) if kind == "match" and isinstance(next(iter(inner.values())), dict) else inner
            if isinstance(target, dict):
                target["_name"] = r.choice([5, "n", True, 1.5, "qrw:original"])
        return clause

    def match_options(self) -> dict:
        r = self.r
        options: dict = {}
        if r.random() < 0.3:
            options["zero_terms_query"] = r.choice(["all", "none"])
        if r.random() < 0.2:
            options["operator"] = r.choice(["and", "or", "AND"])
        if r.random() < 0.2:
            options["fuzziness"] = r.choice(["AUTO", 1, "2"])
        if r.random() < 0.2:
            options["boost"] = r.choice([2, 0.5, "3"])
        if r.random() < 0.1:
            options["minimum_should_match"] = r.choice(["75%", 1, "-1"])
        return options

    def multi_options(self) -> dict:
        r = self.r
        options: dict = {}
        if r.random() < 0.3:
            options["type"] = r.choice(["best_fields", "most_fields", "cross_fields", "phrase", "bool_prefix"])
        if r.random() < 0.2:
            options["zero_terms_query"] = "all"
        if r.random() < 0.15:
            options["lenient"] = True
        if r.random() < 0.1:
            options["tie_breaker"] = 0.3
        return options

    def query(self, depth: int = 0) -> dict:
        r = self.r
        roll = r.random()
        if depth > 3 or roll < 0.45:
            return self.text_clause()
        if roll < 0.7:
            spec: dict = {}
            for occur in r.sample(["must", "should", "filter", "must_not"], r.randint(1, 3)):
                children = [self.query(depth + 1) if occur in ("must", "should") else self.filter() for _ in range(r.randint(1, 2))]
                spec[occur] = children if r.random() < 0.8 else children[0]
            if r.random() < 0.2:
                spec["minimum_should_match"] = 1
            return {"bool": spec}
        if roll < 0.8:
            return {"function_score": {"query": self.query(depth + 1), "functions": [{"weight": 2}], "boost_mode": "multiply"}}
        if roll < 0.9:
            return {"dis_max": {"queries": [self.query(depth + 1), self.text_clause()], "tie_breaker": 0.2}}
        return {"boosting": {"positive": self.query(depth + 1), "negative": {"match": {"title": "bag"}}, "negative_boost": 0.5}}

    def filter(self) -> dict:
        r = self.r
        return r.choice([
            {"range": {"price": {"lte": r.choice([50, 500, 5000])}}},
            {"term": {"supplier.raw": r.choice(["HP", "Canon", "Logitech"])}},
            {"exists": {"field": "ean"}},
            {"match": {"title": self.text()}},
        ])

    def search_body(self) -> dict:
        r = self.r
        body: dict = {"query": self.query()}
        if r.random() < 0.5:
            body["size"] = r.choice([0, 1, 3, 10, 50])
        if r.random() < 0.2:
            body["from"] = r.choice([0, 2, 10])
        if r.random() < 0.2:
            body["sort"] = [r.choice([{"price": "asc"}, {"_score": "desc"}, "_doc"])]
        if r.random() < 0.2:
            body["aggs"] = {"p": {"max": {"field": "price"}}, "s": {"terms": {"field": "supplier.raw", "size": 3}}}
        if r.random() < 0.2:
            body["_source"] = r.choice([False, ["title", "price"], True])
        if r.random() < 0.1:
            body["highlight"] = {"fields": {"title": {}}}
        if r.random() < 0.15:
            body["track_total_hits"] = r.choice([True, 100])
        if r.random() < 0.25:
            body["ext"] = {"qrw": self.ext_options()}
        return body

    def ext_options(self):
        r = self.r
        return r.choice([{}, {"explain": True}, {"explain": "yes"}, {"deadline_ms": 50}, {"deadline_ms": 60_000},
                         {"deadline_ms": "5"}, {"deadline_ms": -1}, {"deadline_ms": 1e300}, True, [], {"explain": {"a": 1}}])

    # -- families ------------------------------------------------------------------------------

    def index_path(self, api: str = "_search") -> str:
        return self.r.choice([f"/products/{api}", f"/{api}", f"/products,products/{api}", f"/prod*/{api}"])

    def structure(self) -> Case:
        return Case("structure", self.r.choice(["POST", "POST", "GET"]), self.index_path(), j(self.search_body()).encode(),
                    [(b"content-type", b"application/json")])

    def unicode(self) -> Case:
        r = self.r
        text = " ".join(r.choice(WEIRD_TEXT + VOCAB) for _ in range(r.randint(1, 4)))
        kind = r.choice(["match", "multi_match", "query_string"])
        if kind == "match":
            raw = '{"query":{"match":{"title":"%s"}},"size":%d}' % (text, r.choice([0, 3]))
        elif kind == "multi_match":
            raw = '{"query":{"multi_match":{"query":"%s","fields":["title","name"]}},"size":0}' % text
        else:
            raw = '{"query":{"query_string":{"query":"%s"}},"size":0}' % text
        data = raw.encode("utf-8", "surrogatepass")
        roll = r.random()
        if roll < 0.08:
            data = b"\xef\xbb\xbf" + data  # BOM
        elif roll < 0.16:
            data = data.replace(b"title", b"ti\xfftle", 1)  # invalid UTF-8
        elif roll < 0.22:
            data = data.replace(b"size", b"si\xc3\xa9ze", 1)
        return Case("unicode", "POST", self.index_path(), data, [(b"content-type", b"application/json")])

    def numbers(self) -> Case:
        r = self.r
        number = r.choice(["1e400", "-0", "1e-400", "12345678901234567890123", "1.0e1", "0.5", "-1", "10001", "3.0", "1E2", "0"])
        key = r.choice(["size", "from", "min_score", "boost", "terminate_after"])
        body = j(self.search_body())[:-1]
        if key == "boost":
            raw = '{"query":{"match":{"title":{"query":"%s","boost":%s}}}}' % (self.text(), number)
        else:
            raw = body + (',"%s":%s}' % (key, number) if body != "{" else '"%s":%s}' % (key, number))
        return Case("numbers", "POST", self.index_path(), raw.encode(), [(b"content-type", b"application/json")])

    def sizes(self) -> Case:
        r = self.r
        roll = r.random()
        if roll < 0.4:
            text = (self.text() + " ") * r.randint(100, 30_000)
            body = {"query": {"match": {"title": text[:300_000]}}, "size": 0}
        elif roll < 0.7:
            body = {"query": {"bool": {"should": [self.text_clause() for _ in range(r.randint(50, 400))]}}, "size": 1}
        else:
            body = {"query": self.text_clause(), "_source": [f"f{i}" for i in range(r.randint(100, 3000))], "size": 2}
        return Case("sizes", "POST", self.index_path(), j(body).encode(), [(b"content-type", b"application/json")])

    def encoding(self) -> Case:
        r = self.r
        body = self.search_body()
        if r.random() < 0.6:
            body.setdefault("ext", {"qrw": {"explain": True}})
        data = j(body).encode()
        kind = r.choice(["gzip", "gzip", "deflate", "broken", "identity", "charset"])
        headers = [(b"content-type", b"application/json")]
        if kind == "gzip":
            data = gzip.compress(data, mtime=0)
            headers.append((b"content-encoding", b"gzip"))
        elif kind == "deflate":
            data = zlib.compress(data)
            headers.append((b"content-encoding", b"deflate"))
        elif kind == "broken":
            data = gzip.compress(data, mtime=0)[:-8] + b"garbage!"
            headers.append((b"content-encoding", b"gzip"))
        elif kind == "identity":
            headers.append((b"content-encoding", b"identity"))
        else:
            headers = [(b"content-type", r.choice([b"application/json; charset=UTF-8", b"application/json;charset=utf-8"]))]
        return Case("encoding", "POST", self.index_path(), data, headers)

    def msearch(self) -> Case:
        r = self.r
        lines: list[str] = []
        for _ in range(r.randint(1, 4)):
            header = r.choice(['{}', '{"index":"products"}', '1', '[]', '"x"', '', '{"index":["products"]}', '{"preference":"_local"}'])
            lines += [header, j(self.search_body())]
        roll = r.random()
        sep = "\r\n" if roll < 0.1 else "\n"
        text = sep.join(lines) + ("" if 0.1 <= roll < 0.25 else sep)
        if 0.25 <= roll < 0.32:
            text = "\n" + text
        if 0.32 <= roll < 0.38:
            text += lines[0] + "\n"  # a trailing header without a body
        if 0.38 <= roll < 0.44:
            text = text.replace(lines[1], "", 1)  # an empty body line
        return Case("msearch", r.choice(["POST", "GET"]), self.index_path("_msearch"), text.encode("utf-8", "surrogatepass"),
                    [(b"content-type", b"application/x-ndjson")])

    def malformed(self) -> Case:
        r = self.r
        good = j(self.search_body())
        kind = r.choice(["truncate", "duplicate", "trailing", "comment", "nan", "quotes", "empty", "scalar", "array"])
        if kind == "truncate":
            raw = good[: r.randint(1, max(1, len(good) - 1))]
        elif kind == "duplicate":
            raw = good[:-1] + ',"size":3,"size":4}' if len(good) > 2 else '{"size":1,"size":2}'
        elif kind == "trailing":
            raw = good + r.choice([" x", "{}", "]", " // c", " "])
        elif kind == "comment":
            raw = good.replace("{", "{ /* c */ ", 1) + " // end"
        elif kind == "nan":
            raw = '{"query":{"match_all":{}},"min_score":%s}' % r.choice(["NaN", "Infinity", "-Infinity"])
        elif kind == "quotes":
            raw = good.replace('"', "'")
        elif kind == "empty":
            raw = r.choice(["", " ", "\n", "{}"])
        elif kind == "scalar":
            raw = r.choice(["1", "null", '"q"', "true"])
        else:
            raw = "[" + good + "]"
        return Case("malformed", "POST", self.index_path(), raw.encode("utf-8", "surrogatepass"), [(b"content-type", b"application/json")])

    def ext(self) -> Case:
        body = {"query": self.text_clause(), "size": 0, "ext": {"qrw": self.ext_options()}}
        if self.r.random() < 0.3:
            body["ext"]["other"] = {"x": 1}
        return Case("ext", "POST", self.index_path(), j(body).encode(), [(b"content-type", b"application/json")])

    def depth(self) -> Case:
        r = self.r
        levels = r.choice([10, 40, 60, 90, 99, 101, 150, 300, 450])
        query: dict = {"match": {"title": self.text()}}
        for _ in range(levels):
            query = {"bool": {"must": query}} if r.random() < 0.7 else {"constant_score": {"filter": query}}
        body = {"query": query, "size": 0}
        raw = j(body).encode()
        over = raw.count(b"{") > DEPTH_LIMIT  # objects only here: each level is 2 objects
        path = r.choice(["/products/_search", "/products/_count"])
        if r.random() < 0.2:
            return Case("depth", "POST", "/_msearch", b"{}\n" + raw + b"\n", [(b"content-type", b"application/x-ndjson")],
                        over_limit=over)
        return Case("depth", "POST", path, raw, [(b"content-type", b"application/json")], over_limit=over)

    def passthrough(self) -> Case:
        r = self.r
        headers = [(b"accept-encoding", b"gzip")] if r.random() < 0.5 else []
        choice = r.randint(0, 11)
        if choice == 0:
            return Case("passthrough", "POST", "/products/_count", j({"query": self.query()}).encode(),
                        headers + [(b"content-type", b"application/json")], passthrough=True)
        if choice == 1:
            return Case("passthrough", "GET", f"/products/_doc/{r.choice(['1', 'nope', '%2F', 'x y'.replace(' ', '%20')])}", None, headers,
                        passthrough=True)
        if choice == 2:
            return Case("passthrough", "GET", "/products/_mapping", None, headers, passthrough=True)
        if choice == 3:
            text = r.choice(WEIRD_TEXT + VOCAB)
            return Case("passthrough", "POST", "/products/_analyze",
                        ('{"field":"title","text":"%s"}' % text).encode("utf-8", "surrogatepass"),
                        headers + [(b"content-type", b"application/json")], passthrough=True)
        if choice == 4:
            return Case("passthrough", "GET", r.choice(["/_cat/indices/products*?h=docs.count", "/_cat/count/products?h=count",
                                                         "/_cat/aliases/products?h=alias"]), None, headers, passthrough=True)
        if choice == 5:
            return Case("passthrough", "HEAD", r.choice(["/products", "/nope", "/products/_doc/1"]), None, headers, passthrough=True)
        if choice == 6:
            return Case("passthrough", r.choice(["GET", "POST"]), r.choice(["/_nope", "/products/_nope", "/products/_search/x/y"]),
                        None, headers, passthrough=True)
        if choice == 7:
            return Case("passthrough", "GET", "/products/_count?q=" + r.choice(["laptop", "title:hp", "%2A"]), None, headers,
                        passthrough=True)
        if choice == 8:
            return Case("passthrough", "POST", "/products/_validate/query?explain=false", j({"query": self.query()}).encode(),
                        headers + [(b"content-type", b"application/json")], passthrough=True)
        if choice == 9:
            return Case("passthrough", "GET", "/", None, headers, passthrough=True)
        if choice == 10:
            return Case("passthrough", "POST", "/products/_mget", j({"ids": [r.choice(["1", "2", "x"]) for _ in range(3)]}).encode(),
                        headers + [(b"content-type", b"application/json")], passthrough=True)
        return Case("passthrough", "GET", "/products/_settings?filter_path=**.number_of_shards", None, headers, passthrough=True)

    FAMILIES = (("structure", 30), ("unicode", 10), ("numbers", 8), ("sizes", 4), ("encoding", 8), ("msearch", 12),
                ("malformed", 8), ("ext", 6), ("depth", 4), ("passthrough", 10))

    def case(self) -> Case:
        names = [n for n, _ in self.FAMILIES]
        weights = [w for _, w in self.FAMILIES]
        return getattr(self, self.r.choices(names, weights)[0])()


def generate(seed: int, count: int) -> list[Case]:
    gen = Gen(random.Random(seed))
    return [gen.case() for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------

_TOOK = re.compile(rb'"took":\d+')


def normalised(body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), b"")
    if encoding.lower() == b"gzip":
        try:
            body = gzip.decompress(body)
        except OSError:
            return body
    return _TOOK.sub(b'"took":0', body)


def error_type(body: bytes, headers) -> str | None:
    try:
        payload = json.loads(normalised(body, headers))
        return payload.get("error", {}).get("type") if isinstance(payload, dict) and isinstance(payload.get("error"), dict) else None
    except ValueError:
        return None


def header_set(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return sorted((k.lower(), v) for k, v in headers)


@dataclass
class Tally:
    cases: Counter = field(default_factory=Counter)
    violations: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)
    depth_refused: int = 0
    node_deaths: int = 0
    rewritten_differ: int = 0
    ext_stripped: int = 0
    opensearch_closed: int = 0
    outcomes: Counter = field(default_factory=Counter)
    """(family, OpenSearch's status class, the proxy's status class) -> cases."""

    def bad(self, kind: str, case: Case, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 30:
            self.examples.append({"violation": kind, "family": case.family, "method": case.method, "path": case.path,
                                  "body": (case.body or b"")[:300].decode("utf-8", "replace"), "detail": detail[:500]})


async def compare(case: Case, proxy: Client, direct: Client, tally: Tally, rng: random.Random) -> bool:
    """Send one case both ways; returns False when the direct side could not be reached (node down?)."""
    tally.cases[case.family] += 1
    if case.over_limit:
        response = await proxy.request(case.method, case.path, case.body, case.headers)
        if response.status == 400 and error_type(response.body, response.headers) == "qrw_depth_limit_exception":
            tally.depth_refused += 1
        else:
            tally.bad("depth_not_refused", case, f"proxy answered {response.status}")
        return True
    first_proxy = rng.random() < 0.5
    results: dict[str, object] = {}
    for side in (("proxy", "direct") if first_proxy else ("direct", "proxy")):
        client = proxy if side == "proxy" else direct
        try:
            results[side] = await client.request(case.method, case.path, case.body, case.headers)
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            results[side] = exc
    a, b = results["proxy"], results["direct"]
    if isinstance(a, BaseException):
        tally.bad("proxy_transport", case, f"{type(a).__name__}: {a}")
        return not isinstance(b, BaseException)
    if isinstance(b, BaseException):
        # OpenSearch closed the connection without an answer (e.g. a body it cannot decode): the node
        # must still be alive (checked by the caller), and the proxy must have answered in JSON below 500.
        tally.opensearch_closed += 1
        if a.status >= 500 or error_type(a.body, a.headers) is None:
            tally.bad("proxy_5xx", case, f"OpenSearch closed the connection; the proxy answered {a.status}")
        return False
    tally.outcomes[f"{case.family} direct={b.status // 100}xx proxy={a.status // 100}xx"] += 1
    a_type = error_type(a.body, a.headers)
    if a.status >= 500 and (b.status < 500 or a_type in QRW_ERROR_TYPES):
        tally.bad("proxy_5xx", case, f"proxy {a.status} {a_type}, OpenSearch {b.status}")
    if 200 <= b.status < 300 and not 200 <= a.status < 300:
        if a_type == "qrw_depth_limit_exception":
            tally.depth_refused += 1
        else:
            tally.bad("ok_lost", case, f"OpenSearch {b.status}, proxy {a.status}: {normalised(a.body, a.headers)[:300]!r}")
    if case.passthrough:
        if a.status != b.status or header_set(a.headers) != header_set(b.headers) or normalised(a.body, a.headers) != normalised(b.body, b.headers):
            if header_set(a.headers) != header_set(b.headers) or a.status != b.status:
                tally.bad("passthrough_differs", case, f"status {a.status}/{b.status} headers {header_set(a.headers)} vs {header_set(b.headers)}")
            else:
                tally.bad("passthrough_differs", case, "body bytes differ")
        return True
    if a.status == b.status and normalised(a.body, a.headers) == normalised(b.body, b.headers):
        return True
    if 200 <= a.status < 300 and b.status == 400 and b"SearchExtBuilder" in normalised(b.body, b.headers):
        tally.ext_stripped += 1  # OpenSearch refuses ext.qrw; the proxy strips it, as it must
        return True
    if case.family == "msearch" and b"SearchExtBuilder" in normalised(b.body, b.headers):
        tally.ext_stripped += 1
        return True
    # Different answers to a search: fine if the proxy rewrote it; not fine if it did not.
    rewritten = await was_rewritten(proxy, case)
    if rewritten:
        tally.rewritten_differ += 1
    elif a.status != b.status or (200 <= a.status < 300):
        tally.bad("unrewritten_differs", case, f"status {a.status}/{b.status}; {normalised(a.body, a.headers)[:200]!r} vs "
                                               f"{normalised(b.body, b.headers)[:200]!r}")
    return True


async def was_rewritten(proxy: Client, case: Case) -> bool:
    headers = [h for h in case.headers] + [(b"x-qrw-explain", b"1"), (b"x-qrw-debug-token", TOKEN.encode())]
    response = await proxy.request(case.method, case.path, case.body, headers)
    summary = next((v for k, v in response.headers if k.lower() == b"x-qrw-explain"), b"")
    match = re.search(rb"rewritten=(\d+)/", summary)
    recovered = re.search(rb"recovered=(\d+)", summary)  # zero-hit recovery answered with a fuzzy retry
    return bool(match and int(match.group(1)) > 0) or bool(recovered and int(recovered.group(1)) > 0)


async def run_fuzz(proxy_url: str, direct_url: str, cases: list[Case], *, seed: int = 0, alive=None, restart=None,
                   progress: bool = False) -> Tally:
    """Send every case; ``alive()`` is asked after each batch and after transport failures, ``restart()`` when it says no."""
    rng = random.Random(seed + 1)
    tally = Tally()
    proxy, direct = Client(proxy_url), Client(direct_url)
    started = time.monotonic()
    try:
        for i, case in enumerate(cases):
            reached = await compare(case, proxy, direct, tally, rng)
            if (not reached or (i + 1) % 200 == 0) and alive is not None and not await asyncio.to_thread(alive):
                tally.node_deaths += 1
                tally.bad("node_death", case, "OpenSearch stopped answering")
                if restart is not None:
                    await asyncio.to_thread(restart)
            if progress and (i + 1) % 500 == 0:
                print(f"{i + 1}/{len(cases)} cases, {time.monotonic() - started:.0f}s, violations {dict(tally.violations)}", flush=True)
    finally:
        proxy.close()
        direct.close()
    return tally


def proxy_config(precompute: Path | None = None) -> str:
    text = f"chain:\n  deadline_ms: 2000\nproxy:\n  debug_token: {TOKEN}\n  max_json_depth: {DEPTH_LIMIT}\n"
    return text


def write_fuzz_table(path: Path) -> Path:
    rows = [{"query": q, "rewrites": [{"text": t, "probabilities": p} for t, p in rewrites]} for q, rewrites in TABLE.items()]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.cases <= 100_000:
        parser.error("bounded: 1..100,000 cases")
    import uvloop

    from loadtest_proxy import machine, opensearch_node, proxy_process
    from qrw.search import node as os_node

    cases = generate(args.seed, args.cases)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, opensearch_node("fuzz") as cfg:
        table = write_fuzz_table(Path(tmp) / "table.jsonl")
        with proxy_process(cfg.http_url, table, config_text=proxy_config()) as (proxy_url, _):
            uvloop.install()
            tally = asyncio.run(run_fuzz(proxy_url, cfg.http_url, cases, seed=args.seed,
                                         alive=lambda: os_node.cluster_health(cfg.http_url, timeout=10) is not None,
                                         restart=lambda: os_node.start(cfg), progress=True))
    report = {
        "machine": machine(),
        "method": {"cases": args.cases, "seed": args.seed, "families": dict(Gen.FAMILIES), "depth_limit": DEPTH_LIMIT,
                   "wall_s": round(time.monotonic() - started, 1)},
        "cases_by_family": dict(tally.cases),
        "violations": dict(tally.violations),
        "proxy_5xx": tally.violations.get("proxy_5xx", 0),
        "ok_lost_outside_depth_limit": tally.violations.get("ok_lost", 0),
        "node_deaths": tally.node_deaths,
        "passthrough_differs": tally.violations.get("passthrough_differs", 0),
        "unrewritten_search_differs": tally.violations.get("unrewritten_differs", 0),
        "refused_by_depth_limit": tally.depth_refused,
        "rewritten_and_different_from_direct": tally.rewritten_differ,
        "ext_qrw_stripped_where_opensearch_refuses_it": tally.ext_stripped,
        "opensearch_closed_connection_without_answer": tally.opensearch_closed,
        "outcomes": dict(sorted(tally.outcomes.items())),
        "examples": tally.examples,
    }
    report["passed"] = not tally.violations
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
