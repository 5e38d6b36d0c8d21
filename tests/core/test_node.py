"""Provisioning checks that need no running node."""

import pytest

from qrw.errors import NodeError
from qrw.search import node as os_node


def test_corrupt_cached_zip_is_rejected(tmp_path):
    cfg = os_node.NodeConfig(name="corrupt", cache_dir=tmp_path, runtime_dir=tmp_path / "rt")
    cfg.zip_path.parent.mkdir(parents=True)
    cfg.zip_path.write_bytes(b"not the real distribution")
    with pytest.raises(NodeError, match="checksum mismatch"):
        os_node.fetch_distribution(cfg)


@pytest.mark.parametrize("heap", ["2g", "4096m", "lots"])
def test_heap_is_limited(heap):
    with pytest.raises(NodeError):
        os_node.NodeConfig(heap=heap)


def test_taken_port_is_reported(tmp_path, opensearch_node):
    cfg = os_node.NodeConfig(name="clash", port=opensearch_node.port, runtime_dir=tmp_path)
    with pytest.raises(NodeError, match="is taken"):
        os_node.start(cfg)


def test_stop_without_node_is_harmless(tmp_path):
    assert os_node.stop(os_node.NodeConfig(name="absent", runtime_dir=tmp_path)) is False
