"""Shared fixtures: one real OpenSearch node per test session, the real catalog indexed once.

The node runs on a free loopback port in its own folder (name ``test-<pid>``), so a user's own
node on 9200 is never touched; it is stopped and deleted when the session ends.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qrw.search import node as os_node
from qrw.search.catalog import default_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    assert (path / "products").is_dir(), f"Icecat data not found at {path}; set QRW_DATA_DIR"
    return path


@pytest.fixture(scope="session")
def judgments_path(data_dir: Path) -> Path:
    return data_dir / "judgments" / "judgments.csv"


@pytest.fixture(scope="session")
def opensearch_node():
    """A started node (NodeConfig); the URL is ``node.http_url``."""
    cfg = os_node.NodeConfig(name=f"test-{os.getpid()}", port=os_node.free_port())
    os_node.start(cfg)
    yield cfg
    os_node.destroy(cfg)


@pytest.fixture(scope="session")
def opensearch_url(opensearch_node) -> str:
    return opensearch_node.http_url


@pytest.fixture(scope="session")
def catalog(data_dir):
    from qrw.search.catalog import load_catalog

    return load_catalog(data_dir)


@pytest.fixture(scope="session")
def indexed_catalog(opensearch_url, catalog) -> str:
    """The full catalog indexed under the alias ``products`` on the session node; returns the alias."""
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    index_catalog(open_client(opensearch_url), catalog, "products", progress=False, url=opensearch_url)
    return "products"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, catalog) -> Path:
    """A tiny random Qwen2 + BPE trained on catalog titles (``qrw.trainer.tiny``), built once per session."""
    from qrw.trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=[p.title for p in catalog[:3000]])


@pytest.fixture(scope="session")
def tiny_export(stored_tiny_export) -> Path:
    """The tiny model exported fp32 for CPU by the real ``qrw-export`` entry point: the export the
    one model path (``qrw model path CKPT``) makes, so the session exports the tiny model once."""
    return stored_tiny_export


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A model cache of the test session's own (``QRW_CACHE_DIR``), so the user's cache is never touched."""
    return tmp_path_factory.mktemp("qrw-cache")


@pytest.fixture(scope="session")
def stored_tiny_export(model_cache, tiny_checkpoint) -> Path:
    """The tiny checkpoint exported through the one model path (``qrw model path CKPT``) into ``model_cache``."""
    import subprocess
    import sys

    env = {**os.environ, "QRW_CACHE_DIR": str(model_cache)}
    result = subprocess.run([sys.executable, "-m", "qrw.cli", "model", "path", str(tiny_checkpoint)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


SHOP = REPO_ROOT / "examples" / "shop"


@pytest.fixture(scope="session")
def shop_index(opensearch_url) -> str:
    """The example shop catalog (examples/shop) indexed with its profile under the alias ``shop``."""
    from qrw.search.connect import open_client
    from qrw.search.documents import read_jsonl
    from qrw.search.index import index_documents
    from qrw.search.profile import load_profile

    profile = load_profile(SHOP / "profile.yaml")
    index_documents(open_client(opensearch_url), read_jsonl(SHOP / "catalog.jsonl"), profile, progress=False,
                    url=opensearch_url)
    return profile.index
