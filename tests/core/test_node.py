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


def test_cluster_members_share_seeds_and_get_their_own_ports(tmp_path):
    base = os_node.NodeConfig(name="c", port=9400, runtime_dir=tmp_path)
    members = os_node.cluster_members(base, 3)
    assert [(m.name, m.port, m.transport) for m in members] == [("c-0", 9400, 9500), ("c-1", 9401, 9501), ("c-2", 9402, 9502)]
    settings = os_node.node_settings(members[1])
    assert "-Ediscovery.seed_hosts=127.0.0.1:9500,127.0.0.1:9501,127.0.0.1:9502" in settings
    assert "-Ecluster.initial_cluster_manager_nodes=c-0,c-1,c-2" in settings and "-Ecluster.name=qrw-c" in settings
    assert not any("single-node" in s for s in settings)
    assert "-Ediscovery.type=single-node" in os_node.node_settings(base)
    assert os_node.cluster_members(base, 1) == [base]
    with pytest.raises(NodeError):
        os_node.cluster_members(base, 12)


def test_a_running_node_is_not_reused_when_the_caller_did_not_start_it(opensearch_node):
    assert os_node.start(opensearch_node) == opensearch_node.http_url  # an idempotent start reuses it
    with pytest.raises(NodeError, match="already runs"):
        os_node.start(opensearch_node, reuse=False)


def test_status_exit_code_says_whether_a_node_runs(opensearch_node, tmp_path):
    import subprocess
    import sys

    def status(*args):
        return subprocess.run([sys.executable, "-m", "qrw.cli", "opensearch", "status", *args], capture_output=True, text=True,
                              timeout=120, env={**__import__("os").environ, "QRW_RUNTIME_DIR": str(opensearch_node.runtime_dir)})

    running = status("--name", opensearch_node.name, "--port", str(opensearch_node.port))
    assert running.returncode == 0 and '"running": true' in running.stdout
    absent = status("--name", "no-such-node", "--port", str(os_node.free_port()))
    assert absent.returncode == 1 and '"running": false' in absent.stdout
    partial = status("--name", opensearch_node.name, "--port", str(opensearch_node.port), "--nodes", "2")
    assert partial.returncode == 1  # members <name>-0/-1 do not exist
