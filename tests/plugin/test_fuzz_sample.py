"""A small seeded sample of the fuzz comparison (benchmarks/fuzz_proxy.py), through the proxy and direct.

The full run (10,000 cases) is a benchmark; here 300 cases keep ``make test`` fast, and a planted
fault checks that the comparison would notice a proxy that is not transparent.
"""

import asyncio
import importlib.util
from pathlib import Path

import pytest
import yaml

from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine
from qrw.plugin.proxy import create_app
from qrw.plugin.table import TableRewriteModel
from qrw.search import node as os_node

pytestmark = pytest.mark.opensearch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def fuzz():
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("fuzz_proxy", BENCHMARKS / "fuzz_proxy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_proxy"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def fuzz_engine(fuzz, tmp_path):
    return RewriteEngine(load_config(None, **yaml.safe_load(fuzz.proxy_config())),
                         TableRewriteModel.from_file(fuzz.write_fuzz_table(tmp_path / "table.jsonl")))


def test_seeded_sample_finds_no_difference(fuzz, opensearch_node, indexed_catalog, serve, tmp_path):
    cases = fuzz.generate(seed=15, count=300)
    assert cases == fuzz.generate(seed=15, count=300)  # seeded: the same sample every run
    engine = fuzz_engine(fuzz, tmp_path)
    with serve(create_app(engine, opensearch_node.http_url)) as server:
        tally = asyncio.run(fuzz.run_fuzz(server.url, opensearch_node.http_url, cases, seed=15,
                                          alive=lambda: os_node.cluster_health(opensearch_node.http_url, timeout=10) is not None))
    engine.close()
    assert dict(tally.violations) == {}, tally.examples[:5]
    assert tally.node_deaths == 0
    assert set(tally.cases) == {name for name, _ in fuzz.Gen.FAMILIES}  # every family was exercised
    assert tally.rewritten_differ > 20 and tally.depth_refused > 0  # rewriting happened; the depth limit was hit


def test_the_comparison_notices_a_proxy_that_is_not_transparent(fuzz, opensearch_node, indexed_catalog, serve, tmp_path, monkeypatch):
    from qrw.plugin import proxy as proxy_module

    original = proxy_module._response_headers
    monkeypatch.setattr(proxy_module, "_response_headers", lambda headers, **kw: original(headers, **kw) + [(b"x-added", b"1")])
    cases = [c for c in fuzz.generate(seed=16, count=400) if c.passthrough][:20]
    engine = fuzz_engine(fuzz, tmp_path)
    with serve(create_app(engine, opensearch_node.http_url)) as server:
        tally = asyncio.run(fuzz.run_fuzz(server.url, opensearch_node.http_url, cases, seed=16))
    engine.close()
    assert tally.violations["passthrough_differs"] == len(cases)
