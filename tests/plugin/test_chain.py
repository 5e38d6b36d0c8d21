"""The rewriter chain and the engine without OpenSearch: table model, rules, guards, gate, ladder, explain."""

import logging
import time

import pytest

from qrw.errors import ConfigError
from qrw.plugin.chain import Chain, GateFactory, RulesFactory
from qrw.plugin.config import GateConfig, load_config
from qrw.plugin.engine import RewriteEngine, load_model
from qrw.plugin.model import RewriteModel
from qrw.plugin.rules import load_rules
from qrw.plugin.table import TableRewriteModel

BODY = {"query": {"multi_match": {"query": "laptop", "fields": ["title", "name"]}}, "size": 3}


def engine_for(model, rules=None, **sections):
    return RewriteEngine(load_config(None, **sections), model, rules)


def kept(engine, query):
    return [(c.text, c.decision.weight) for c in engine.rewrite_query(query).kept]


def test_table_model_is_a_rewrite_model(table_file):
    model = TableRewriteModel.from_file(table_file)
    assert isinstance(model, RewriteModel)
    assert model.generate(["LAPTOP", "nothing"], 2) == [["notebook", "notebook computer"], []]
    assert model.tag([("laptop", "notebook"), ("laptop", "unknown")])[1]["irrelevant"] == 1.0


def test_chain_gates_guards_and_rules(table_file, rules_file):
    engine = engine_for(TableRewriteModel.from_file(table_file), load_rules(rules_file),
                        guards={"brands": ["hp", "canon"]}, chain={"num_rewrites": 4})
    # notebook: exact -> full; notebook computer: exact+substitute 0.8 -> down; laptop bag: weak -> drop; "Laptop" copies the query.
    assert kept(engine, "laptop") == [("notebook", 1.0), ("notebook computer", 0.3)]
    # canon toner loses the brand; "cheap hp toner" is blocked by the merchandiser's rule.
    assert kept(engine, "hp toner") == [("hp laserjet toner cartridge", 1.0)]
    # a pin joins the model's rewrite, at its own weight
    assert kept(engine, "usb stick") == [("usb flash drive", 1.0), ("pendrive", 0.5)]


def test_explain_is_nested_and_off_builds_nothing(table_file, rules_file):
    engine = engine_for(TableRewriteModel.from_file(table_file), load_rules(rules_file), chain={"num_rewrites": 4})
    new_body, report = engine.rewrite_body({**BODY, "ext": {"qrw": {"explain": True}}})
    assert "ext" not in new_body
    assert [step["id"] for step in report["log"]["chain"]] == ["model", "guards", "gate", "rules", "terms"]
    actions = {(a["action"], a.get("text")) for step in report["log"]["chain"] for a in step["actions"]}
    assert ("drop", "Laptop") in actions and ("full", "notebook") in actions
    by_text = {row["text"]: row for row in report["rewrites"]}
    assert by_text["notebook"]["name"] == "qrw:rewrite:0" and by_text["notebook"]["tag"] == "exact"
    assert by_text["laptop bag"]["action"] == "drop" and by_text["notebook computer"]["weight"] == 0.3
    assert set(report["timings_ms"]) == {"model", "chain", "total"}
    _, silent = engine.rewrite_body(BODY)
    assert silent is None
    assert engine.rewrite_query("laptop").context.explain.steps == []


def test_chain_ids_must_be_unique():
    with pytest.raises(ConfigError, match="gate"):
        Chain([GateFactory(GateConfig()), GateFactory(GateConfig()), RulesFactory(load_rules(None))])


def test_model_timeout_falls_back_to_original_then_cache(faulty_model_cls, caplog):
    model = faulty_model_cls(delay_s=0.3)
    engine = engine_for(model, chain={"deadline_ms": 50})
    with caplog.at_level(logging.WARNING, logger="qrw.plugin"):
        started = time.monotonic()
        body, report = engine.rewrite_body(BODY, explain=True)
        assert time.monotonic() - started < 0.25  # the deadline, not the model, decides
    assert body == BODY and report["model"]["origin"] == "none" and "did not answer" in report["model"]["error"]
    assert "fallback" in caplog.text
    time.sleep(0.4)  # the late answer still fills the cache
    body, report = engine.rewrite_body(BODY, explain=True)
    assert report["model"]["origin"] == "cache" and "bool" in body["query"]
    assert model.calls == 1


def test_model_failure_uses_stale_cache_then_original(faulty_model_cls):
    model = faulty_model_cls()
    engine = RewriteEngine(load_config(None, cache={"ttl_s": 0.05}), model)
    assert engine.rewrite_body(BODY, explain=True)[1]["model"]["origin"] == "model"
    time.sleep(0.1)
    model.fail = True
    body, report = engine.rewrite_body(BODY, explain=True)
    assert report["model"]["origin"] == "stale" and "injected" in report["model"]["error"] and "bool" in body["query"]
    other = {"query": {"match": {"title": "tablet"}}}
    body, report = engine.rewrite_body(other, explain=True)
    assert body == other and report["model"]["origin"] == "none"


def test_overload_falls_back_at_once_and_identical_queries_share_a_call(faulty_model_cls):
    import concurrent.futures

    model = faulty_model_cls(delay_s=0.3)
    engine = engine_for(model, chain={"deadline_ms": 1000, "max_pending": 1})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: engine.rewrite_body(BODY, explain=True)[1]["model"]["origin"], range(6)))
    assert results == ["model"] * 6 and model.calls == 1  # single flight
    engine2 = engine_for(faulty_model_cls(delay_s=0.3), chain={"deadline_ms": 1000, "max_pending": 1})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(engine2.rewrite_body, BODY, explain=True)
        time.sleep(0.05)
        b = pool.submit(engine2.rewrite_body, {"query": {"match": {"t": "tablet"}}}, explain=True)
        assert b.result()[1]["model"]["error"].startswith("1 model calls pending")
        assert a.result()[1]["model"]["origin"] == "model"


def test_rules_still_apply_without_a_model(rules_file):
    engine = engine_for(None, load_rules(rules_file))
    body, report = engine.rewrite_body({"query": {"match": {"title": "usb stick"}}}, explain=True)
    assert report["model"]["error"] == "no model loaded"
    assert body["query"]["bool"]["should"][1]["match"]["title"]["query"] == "pendrive"


def test_index_patterns_long_queries_and_precompute(table_file, tmp_path, faulty_model_cls):
    engine = engine_for(TableRewriteModel.from_file(table_file), proxy={"rewrite_indices": ["products*"]}, chain={"max_query_chars": 20})
    assert engine.enabled_for("products") and engine.enabled_for("products-abc,products")
    assert not engine.enabled_for("logs") and not engine.enabled_for(None) and not engine.enabled_for("products,logs")
    assert engine.rewrite_body(BODY, index="logs")[0] == BODY
    long = {"query": {"match": {"title": "laptop " * 10}}}
    assert engine.rewrite_body(long, index="products")[0] == long
    queries = tmp_path / "q.txt"
    queries.write_text("laptop\ntablet\n")
    model = faulty_model_cls()
    warm = RewriteEngine(load_config(None, cache={"precompute_file": str(queries)}), model)
    assert model.calls == 2 and warm.source.is_fresh("Laptop") and not warm.needs_model(BODY)


def test_load_model_never_crashes(tmp_path, caplog, table_file):
    with caplog.at_level(logging.WARNING, logger="qrw.plugin"):
        assert load_model(tmp_path / "missing") is None
        (tmp_path / "empty").mkdir()
        assert load_model(tmp_path / "empty") is None
        bad = tmp_path / "bad.jsonl"
        bad.write_text("{not json\n")
        assert load_model(bad) is None
    assert "serving original queries" in caplog.text
    assert isinstance(load_model(table_file), TableRewriteModel)


def test_rewrite_body_never_raises_on_odd_input(table_file):
    engine = engine_for(TableRewriteModel.from_file(table_file))
    for body in (None, [], "text", {"query": "laptop"}, {"query": {"match": None}}, {"ext": "x"}, {"ext": {"qrw": 3}}):
        assert engine.rewrite_body(body)[0] is not None or body is None


def test_a_process_that_never_closes_its_engine_waits_for_the_running_call_at_exit(tmp_path):
    """A script that forgets ``close()`` while a call that outlived its deadline still runs: the interpreter
    used to exit under it (with ONNX Runtime inside the call, the process aborted: exit status 134). The
    workers are daemon threads, so only the exit hook can wait for it; the call writes a file when done."""
    import subprocess
    import sys

    done = tmp_path / "finished"
    script = tmp_path / "forgetful.py"
    script.write_text(f"""
import pathlib, time
from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine

class SlowModel:
    name = "slow"
    def generate(self, queries, n):
        time.sleep(1.0)
        pathlib.Path({str(done)!r}).write_text("done")
        return [[] for _ in queries]
    def tag(self, pairs):
        return []

engine = RewriteEngine(load_config(None, chain={{"deadline_ms": 50}}), SlowModel())
body = {BODY!r}
assert engine.rewrite_body(body)[0] == body  # past the deadline: the original query goes through
""")
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert done.read_text() == "done"  # the exit waited for the call instead of killing it mid-way


def test_close_waits_for_a_model_call_still_running(faulty_model_cls):
    """A call that outlived its deadline has finished when close() returns: nothing of the model runs
    after its owner closed it (a process exiting then would pull the runtime out from under it)."""
    model = faulty_model_cls(delay_s=0.6)
    engine = engine_for(model, chain={"deadline_ms": 50})
    started = time.monotonic()
    assert engine.rewrite_body(BODY)[0] == BODY  # past the deadline: the original query goes through
    assert time.monotonic() - started < 0.5 and model.calls == 1
    engine.close()
    assert time.monotonic() - started >= 0.55  # close() waited for the running call
    assert not any(thread.is_alive() for thread in engine.source._threads)
