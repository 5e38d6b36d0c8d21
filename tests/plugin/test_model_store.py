"""One model path: 'default', exported folders, checkpoints exported once into a cache keyed by content, tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from qrw.errors import ConfigError
from qrw.plugin import model_store
from qrw.plugin.engine import load_model


def qrw(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "QRW_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "qrw.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def test_a_checkpoint_is_exported_once_into_the_cache(stored_tiny_export, tiny_checkpoint, model_cache):
    assert stored_tiny_export.parent == model_cache / "models"
    assert stored_tiny_export.name.startswith(f"{tiny_checkpoint.name}-") and model_store.EXPORT_FLAVOUR in stored_tiny_export.name
    assert (stored_tiny_export / "manifest.json").is_file()
    source = json.loads((stored_tiny_export / model_store.SOURCE_NAME).read_text())
    assert source["source"] == str(tiny_checkpoint.resolve())
    again = qrw("model", "path", str(tiny_checkpoint), cache=model_cache)
    assert again.returncode == 0 and again.stdout.strip() == str(stored_tiny_export)
    assert "exporting" not in again.stderr  # cached: not exported a second time


def test_model_list_shows_the_cache(stored_tiny_export, model_cache):
    result = qrw("model", "list", "--json", cache=model_cache)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["cache"] == str(model_cache / "models")
    (entry,) = [m for m in listing["models"] if m["name"] == stored_tiny_export.name]
    assert entry["target"] == "cpu" and entry["precision"] == "fp32" and entry["size_mb"] > 0
    assert listing["default"].startswith(str(model_cache / "models" / "default-rewriter-"))


def test_every_kind_of_model_name_loads_through_load_model(stored_tiny_export, tiny_checkpoint, model_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("QRW_CACHE_DIR", str(model_cache))
    from qrw.plugin.runtime import OnnxRewriteModel
    from qrw.plugin.table import TableRewriteModel

    assert isinstance(load_model(tiny_checkpoint, strict=True), OnnxRewriteModel)  # checkpoint -> cached export
    assert isinstance(load_model(stored_tiny_export, strict=True), OnnxRewriteModel)  # exported folder
    assert model_store.resolve(stored_tiny_export.name) == stored_tiny_export  # a name from `qrw model list`
    monkeypatch.setenv(model_store.DEFAULT_ENV, str(stored_tiny_export))
    assert isinstance(load_model(), OnnxRewriteModel)  # no name: the default model
    table = tmp_path / "t.jsonl"
    table.write_text('{"query": "a", "rewrites": []}\n')
    assert isinstance(load_model(table), TableRewriteModel)
    assert load_model(None) is None


def test_a_changed_checkpoint_gets_its_own_cache_entry(tiny_checkpoint, tmp_path, model_cache):
    copy = tmp_path / tiny_checkpoint.name
    shutil.copytree(tiny_checkpoint, copy)
    same = qrw("model", "path", "--no-export", str(copy), cache=model_cache).stdout.strip()
    (copy / "generation_config.json").write_text('{"changed": true}')
    changed = qrw("model", "path", "--no-export", str(copy), cache=model_cache).stdout.strip()
    prefix = str(model_cache / "models" / f"{copy.name}-")
    assert same != changed and same.startswith(prefix) and changed.startswith(prefix)


def test_a_new_export_removes_superseded_exports_of_the_same_folder_only(tmp_path):
    models = tmp_path / "models"

    def export(name: str, source: str | None, age_s: int):
        folder = models / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
        if source is not None:
            (folder / model_store.SOURCE_NAME).write_text(json.dumps({"source": source}))
        os.utime(folder, (1_000_000 - age_s, 1_000_000 - age_s))
        return folder

    oldest, older, newest = export("a-1", "/m/a", 300), export("a-2", "/m/a", 200), export("a-3", "/m/a", 100)
    other, by_hand = export("b-1", "/m/b", 400), export("c-1", None, 500)
    assert model_store.prune_superseded(newest) == [oldest]
    assert sorted(p.name for p in models.iterdir()) == ["a-2", "a-3", "b-1", "c-1"]
    assert model_store.prune_superseded(older, keep=1) == [newest]  # the one just exported always stays
    assert model_store.prune_superseded(by_hand) == [] and other.is_dir()


def test_editing_the_training_card_or_its_plots_keeps_the_export_but_a_recalibration_does_not(tiny_checkpoint, tmp_path):
    copy = tmp_path / tiny_checkpoint.name
    shutil.copytree(tiny_checkpoint, copy)
    before = model_store.content_hash(copy)
    (copy / "training_card.md").write_text("# a reworded card\n")
    (copy / "loss.png").write_bytes(b"\x89PNG not really")
    assert model_store.content_hash(copy) == before
    (copy / "serving.yaml").write_text("gate: {keep_min: 0.4}\n")  # travels into the export: a new one is due
    assert model_store.content_hash(copy) != before


def test_unknown_models_are_clear_errors_when_strict_and_warnings_when_serving(tmp_path, caplog, model_cache):
    with pytest.raises(ConfigError, match="model not found"):
        load_model(tmp_path / "models" / "rewriter-int8", strict=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is not a model"):
        load_model(tmp_path / "empty", strict=True)
    with caplog.at_level("WARNING", logger="qrw.plugin"):
        assert load_model(tmp_path / "models" / "rewriter-int8") is None
    assert "serving original queries" in caplog.text and "rewriter-int8" in caplog.text
    result = qrw("model", "path", str(tmp_path / "nothing"), cache=model_cache)
    assert result.returncode == 2 and "model not found" in result.stderr and "qrw model list" in result.stderr


def test_the_shipped_serving_file_is_found_by_every_name_of_the_model(stored_tiny_export, tmp_path, monkeypatch, model_cache):
    """``qrw eval --model default``, the proxy and the sandbox read the calibrated gate and trigger the
    model ships: whatever the model is called, its resolved folder's serving.yaml is the one used."""
    from qrw.plugin.config import SERVING_NAME, load_config

    monkeypatch.setenv("QRW_CACHE_DIR", str(model_cache))
    folder = tmp_path / "calibrated"
    shutil.copytree(stored_tiny_export, folder)
    assert model_store.shipped_serving(folder) is None  # nothing shipped: the defaults apply
    (folder / SERVING_NAME).write_text("gate: {keep_min: 0.7}\nchain: {propose: true}\n")
    assert model_store.shipped_serving(folder) == folder / SERVING_NAME
    monkeypatch.setenv(model_store.DEFAULT_ENV, str(folder))
    assert model_store.shipped_serving("default") == folder / SERVING_NAME
    config = load_config(shipped=model_store.shipped_serving("default"))
    assert config.chain.propose is True and config.gate.keep_min == 0.7
    assert model_store.shipped_serving(None) is None and model_store.shipped_serving(tmp_path / "missing") is None
