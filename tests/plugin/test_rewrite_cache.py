"""The persistent rewrite cache: a SQLite file by default, Valkey/Redis when configured, keyed by model
hash and query; ``qrw precompute`` fills it. The model is the exported tiny model; Redis is a real
``redis-server`` started on a free loopback port (``make test`` installs Debian's package)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from qrw.plugin.cache import FileStore, RedisStore, PersistentCache, StoreError, TTLCache, decode_outputs, encode_outputs
from qrw.plugin.chain import cache_key
from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine, build_cache
from qrw.plugin.table import TableRewriteModel

QUERIES = ["laptop", "hp toner 305a", "usb c cable"]
OUTPUT = (("notebook", {"exact": 0.9, "substitute": 0.05, "weak": 0.03, "irrelevant": 0.02}),)


class CountingModel:
    """The real ONNX model, with its calls counted (so a test can tell a cache answer from a model one)."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name
        self.model_hash = model.model_hash
        self.calls = 0

    def rewrite_and_tag(self, queries, num_rewrites):
        self.calls += 1
        return self.model.rewrite_and_tag(queries, num_rewrites)

    def generate(self, queries, num_rewrites):
        self.calls += 1
        return self.model.generate(queries, num_rewrites)

    def tag(self, pairs):
        return self.model.tag(pairs)


@pytest.fixture(scope="module")
def onnx_model(tiny_export):
    from qrw.plugin.runtime import load_model

    return load_model(tiny_export)


def wait_stored(engine, queries) -> None:
    """The model call's result reaches the cache from a done-callback in the worker thread, just
    after the waiting request got it: wait for the store to hold every query."""
    cache = engine.cache
    deadline = time.monotonic() + 10
    while not all(cache.store.load(cache._store_key(cache_key(q))) for q in queries):
        assert time.monotonic() < deadline, "outputs never reached the store"
        time.sleep(0.01)


def engine(model, **cache):
    return RewriteEngine(load_config(None, chain={"deadline_ms": 5000, "warm_up": False}, cache=cache), model)


# -- the file store (the default) -------------------------------------------------------------------


def test_a_restarted_engine_answers_from_the_file_without_the_model(onnx_model, tmp_path: Path):
    path = tmp_path / "cache.sqlite"
    first = CountingModel(onnx_model)
    cold = engine(first, file=str(path))
    assert isinstance(cold.cache, PersistentCache) and cold.cache.namespace.endswith(f"{onnx_model.model_hash}:n3")
    computed = {q: cold.source.outputs(q, time.monotonic() + 5) for q in QUERIES}
    assert first.calls == len(QUERIES) and all(origin == "model" for _, origin, _ in computed.values())
    wait_stored(cold, QUERIES)
    cold.close()

    second = CountingModel(onnx_model)
    restarted = engine(second, file=str(path))  # a new process: empty memory, the same file
    for query in QUERIES:
        assert restarted.source.is_fresh(query.upper())  # keys are normalised queries
        value, origin, _ = restarted.source.outputs(query, time.monotonic() + 5)
        assert origin == "cache" and value == computed[query][0]
    assert second.calls == 0 and restarted.cache.stats()["store_hits"] >= len(QUERIES)
    asks_two = RewriteEngine(load_config(None, chain={"num_rewrites": 2, "warm_up": False}, cache={"file": str(path)}), CountingModel(onnx_model))
    assert not asks_two.source.is_fresh(QUERIES[0])  # another request shape, another namespace


def test_store_entries_expire_by_persist_ttl_and_stay_as_fallback(tmp_path: Path):
    now = [1000.0]
    store = FileStore(tmp_path / "c.sqlite")
    cache = PersistentCache(TTLCache(10, 60), store, "ns", persist_ttl_s=100, wall_clock=lambda: now[0])
    cache.put("laptop", OUTPUT)
    fresh = PersistentCache(TTLCache(10, 60), store, "ns", persist_ttl_s=100, wall_clock=lambda: now[0])
    assert fresh.is_fresh("laptop") and fresh.get("laptop").value == OUTPUT
    now[0] += 101
    later = PersistentCache(TTLCache(10, 60), store, "ns", persist_ttl_s=100, wall_clock=lambda: now[0])
    hit = later.get("laptop")
    assert hit is not None and not hit.fresh and hit.value == OUTPUT and not later.is_fresh("laptop")
    assert later.fresh_hit("laptop") is None and fresh.fresh_hit("laptop") == OUTPUT
    reread = PersistentCache(TTLCache(10, 60), store, "ns", persist_ttl_s=100, wall_clock=lambda: now[0] - 50)
    assert reread.fresh_hit("laptop") == OUTPUT and reread.stats()["store_hits"] == 1  # from the store, then memory
    assert reread.fresh_hit("laptop") == OUTPUT and reread.stats()["store_hits"] == 1
    assert PersistentCache(TTLCache(10, 60), store, "other", wall_clock=lambda: now[0]).get("laptop") is None


def test_a_corrupt_or_failing_store_is_a_miss_never_an_error(tmp_path: Path, caplog):
    store = FileStore(tmp_path / "c.sqlite")
    store.save("ns:laptop", "{not json", 0.0)
    cache = PersistentCache(TTLCache(10, 60), store, "ns")
    assert cache.get("laptop") is None and cache.stats()["store_errors"] == 1
    assert "rewrite cache store failed" in caplog.text
    store.close()  # every later call fails inside sqlite
    cache.put("tablet", OUTPUT)  # memory still works
    assert cache.get("tablet").value == OUTPUT and cache.get("phone") is None and cache.stats()["store_errors"] >= 2


def test_models_without_a_hash_and_unusable_stores_fall_back_to_memory(table_file, onnx_model, tmp_path: Path, caplog):
    config = load_config(None, cache={"file": str(tmp_path / "c.sqlite")})
    assert isinstance(build_cache(config, TableRewriteModel.from_file(table_file)), TTLCache)
    assert isinstance(build_cache(load_config(None, cache={"store": "memory"}), onnx_model), TTLCache)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    cache = build_cache(load_config(None, cache={"file": str(blocked / "cache.sqlite")}), onnx_model)
    assert isinstance(cache, TTLCache) and "cannot open the rewrite cache file" in caplog.text


def test_encoding_round_trips_and_rejects_other_shapes():
    assert decode_outputs(encode_outputs(OUTPUT)) == OUTPUT and decode_outputs(encode_outputs(())) == ()
    for bad in ('{"a": 1}', '[["x"]]', "[[1, {}]]"):
        with pytest.raises(ValueError):
            decode_outputs(bad)


def test_config_validates_the_store(tmp_path: Path):
    from qrw.errors import ConfigError

    with pytest.raises(ConfigError, match="redis_url"):
        load_config(None, cache={"store": "redis"})
    with pytest.raises(ConfigError, match="store"):
        load_config(None, cache={"store": "memcached"})
    assert load_config(None, cache={"file": str(tmp_path / "x.sqlite")}).cache.store_file() == tmp_path / "x.sqlite"


# -- Valkey/Redis -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            RedisStore(url).ping()
            break
        except StoreError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_two_engines_share_outputs_through_redis(onnx_model, redis_url):
    writer, reader = CountingModel(onnx_model), CountingModel(onnx_model)
    first = engine(writer, store="redis", redis_url=redis_url)
    second = engine(reader, store="redis", redis_url=redis_url)  # another proxy, elsewhere
    value, origin, _ = first.source.outputs("wireless mouse", time.monotonic() + 5)
    assert origin == "model" and writer.calls == 1
    wait_stored(first, ["wireless mouse"])
    shared, origin, _ = second.source.outputs("Wireless  Mouse", time.monotonic() + 5)
    assert origin == "cache" and shared == value and reader.calls == 0
    assert second.cache.stats()["store"].startswith("redis redis://127.0.0.1")


def test_an_unreachable_redis_leaves_the_engine_on_memory(onnx_model, caplog):
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    cache = build_cache(load_config(None, cache={"store": "redis", "redis_url": url}), onnx_model)
    assert isinstance(cache, TTLCache) and "cannot reach redis" in caplog.text
    dead = PersistentCache(TTLCache(10, 60), RedisStore(url, timeout_s=0.05), "ns")
    started = time.monotonic()
    assert dead.get("laptop") is None and not dead.is_fresh("laptop")
    dead.put("laptop", OUTPUT)
    assert dead.get("laptop").value == OUTPUT and dead.stats()["store_errors"] >= 2 and time.monotonic() - started < 5


# -- qrw precompute -----------------------------------------------------------------------------------


def test_precompute_fills_the_store_that_a_new_engine_then_reads(tiny_export, onnx_model, tmp_path: Path, capsys):
    from qrw.cli import main

    queries = tmp_path / "queries.txt"
    queries.write_text("laptop\n\nhp toner 305a\nLaptop\nusb c cable\n")
    config = tmp_path / "plugin.yaml"
    config.write_text(f"cache:\n  file: {tmp_path / 'cache.sqlite'}\n")
    assert main(["precompute", "--queries", str(queries), "--model", str(tiny_export), "--config", str(config), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"] == 3 and summary["computed"] == 3 and summary["cached_before"] == 0  # "Laptop" = "laptop"
    assert summary["model_hash"] == onnx_model.model_hash and summary["store"].startswith("file ")
    model = CountingModel(onnx_model)
    served = RewriteEngine(load_config(config, chain={"warm_up": False}), model)
    assert all(served.source.is_fresh(q) for q in QUERIES) and model.calls == 0
    expected = onnx_model.rewrite_and_tag(["hp toner 305a"], 3)[0]
    value, origin, _ = served.source.outputs("hp toner 305a", time.monotonic() + 5)
    assert origin == "cache" and [r for r, _ in value] == [r for r, _ in expected]
    assert main(["precompute", "--queries", str(queries), "--model", str(tiny_export), "--config", str(config), "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached_before"] == 3 and again["computed"] == 0
    memory = tmp_path / "memory.yaml"
    memory.write_text("cache:\n  store: memory\n")
    assert main(["precompute", "--queries", str(queries), "--model", str(tiny_export), "--config", str(memory)]) == 2
    assert "keeps nothing" in capsys.readouterr().err


def test_cache_key_is_the_normalised_query():
    assert cache_key("  Laptop\tBag ") == cache_key("laptop bag")
