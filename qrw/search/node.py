"""A real single-node OpenSearch on loopback, provisioned without Docker.

Why this exists: the machines this project is developed and tested on have no Docker engine, but
integration tests must run against a real OpenSearch, never a mock. Maven Central publishes the
runnable ``org.opensearch.distribution.integ-test-zip:opensearch`` distribution (core OpenSearch,
no plugins, no bundled JDK); we fetch it once with Maven, verify its checksum, unpack it outside the
checkout and run it on the machine's JDK as an unprivileged system user (OpenSearch refuses root).

Layout on disk (all outside the checkout):

* download cache: ``$QRW_CACHE_DIR/opensearch/<version>/opensearch-<version>.zip``
  (default ``~/.cache/qrw``), keyed by version, so it is fetched once per machine; beside it
  ``modules/`` holds the jars of the modules the zip lacks (``qrw.search.modules``);
* unpacked install: ``$QRW_RUNTIME_DIR/opensearch-<version>/`` (default ``/var/tmp/qrw``);
* one folder per node: ``$QRW_RUNTIME_DIR/nodes/<name>/`` with ``config/``, ``data/``, ``logs/``,
  ``opensearch.pid`` and ``node.json`` (port, url, version).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from qrw.errors import NodeError
from qrw.search.modules import file_sha512, install_modules

# The pinned distribution. 2.19.x runs on the OpenJDK 17 that Debian bookworm ships; 3.x would need
# JDK 21. The checksum was computed on the artifact Maven Central served; Maven's own .sha1 is also
# checked (``--strict-checksums``) while downloading.
DEFAULT_VERSION = "2.19.4"
KNOWN_SHA512 = {
    "2.19.4": "f647ffad1263d5cef32657abe14533cf83e297b7dda42b0c27fa7250aa1de223"
    "67876a4b4bbc76205d84dabeea5f70c8c34d93753e751441a469f09b5e24a8a2",
}
MAVEN_COORDINATES = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"
SERVICE_USER = "qrw-opensearch"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw"))


def _default_runtime_dir() -> Path:
    return Path(os.environ.get("QRW_RUNTIME_DIR", "/var/tmp/qrw"))


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Where and how one local node runs. Every field has its default here and nowhere else."""

    name: str = "default"
    """Node folder name under ``runtime_dir/nodes``; tests use their own name so they never touch a user's node."""
    version: str = DEFAULT_VERSION
    """OpenSearch version of the integ-test-zip distribution."""
    port: int = 9200
    """HTTP port on 127.0.0.1."""
    transport_port: int | None = None
    """Transport port; by default ``port + 100``."""
    heap: str = "512m"
    """JVM heap (Xms = Xmx). At most 1g: CI machines have 2 cores and share memory with training."""
    cache_dir: Path = dataclasses.field(default_factory=_default_cache_dir)
    """Download cache, keyed by version."""
    runtime_dir: Path = dataclasses.field(default_factory=_default_runtime_dir)
    """Unpacked distribution and node folders; must be outside /root so the service user can read it."""
    start_timeout_s: float = 180.0
    """How long to wait for the cluster to turn yellow."""
    cluster: str | None = None
    """Cluster name; ``qrw-<name>`` by default. Members of one cluster share it (``cluster_members``)."""
    seed_transport_ports: tuple[int, ...] = ()
    """Transport ports of all members on 127.0.0.1; empty for a single node (``discovery.type=single-node``)."""
    initial_managers: tuple[str, ...] = ()
    """Node names that may bootstrap the cluster (``cluster.initial_cluster_manager_nodes``); members only."""

    def __post_init__(self) -> None:
        if not (1 <= self.port <= 65535):
            raise NodeError(f"port {self.port} is out of range 1..65535")
        if not self.heap[:-1].isdigit() or self.heap[-1] not in "mg":
            raise NodeError(f"heap {self.heap!r} must look like '512m' or '1g'")
        heap_mb = int(self.heap[:-1]) * (1024 if self.heap[-1] == "g" else 1)
        if heap_mb > 1024:
            raise NodeError(f"heap {self.heap} is above the 1g limit of this project's machines")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cluster_name(self) -> str:
        return self.cluster or f"qrw-{self.name}"

    @property
    def transport(self) -> int:
        return self.transport_port or self.port + 100

    @property
    def node_dir(self) -> Path:
        return self.runtime_dir / "nodes" / self.name

    @property
    def install_dir(self) -> Path:
        return self.runtime_dir / f"opensearch-{self.version}"

    @property
    def zip_path(self) -> Path:
        return self.cache_dir / "opensearch" / self.version / f"opensearch-{self.version}.zip"


# ---------------------------------------------------------------------------------------------
# Fetch and unpack
# ---------------------------------------------------------------------------------------------


def _verify(cfg: NodeConfig, path: Path) -> None:
    expected = KNOWN_SHA512.get(cfg.version)
    if expected is None:
        # Not pinned here: Maven already enforced the .sha1 published beside the artifact.
        return
    actual = file_sha512(path)
    if actual != expected:
        raise NodeError(
            f"checksum mismatch for {path}: sha512 {actual[:16]}… != pinned {expected[:16]}…",
            hint=f"delete {path} and run again to re-download",
        )


def fetch_distribution(cfg: NodeConfig) -> Path:
    """Return the cached, checksum-verified zip, downloading it with Maven on first use."""
    if cfg.zip_path.exists():
        _verify(cfg, cfg.zip_path)
        return cfg.zip_path
    if shutil.which("mvn") is None:
        raise NodeError("Maven ('mvn') is needed to fetch OpenSearch from Maven Central", hint="apt-get install maven")
    cfg.zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cfg.zip_path.parent) as tmp:
        command = [
            "mvn", "-B", "-q", "--strict-checksums",
            f"-Dmaven.repo.local={cfg.cache_dir / 'm2'}",
            MAVEN_DEPENDENCY_PLUGIN,
            f"-Dartifact={MAVEN_COORDINATES.format(version=cfg.version)}",
            f"-DoutputDirectory={tmp}",
        ]
        print(f"fetching OpenSearch {cfg.version} from Maven Central (once per machine)…", flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / f"opensearch-{cfg.version}.zip"
        if result.returncode != 0 or not downloaded.exists():
            raise NodeError(
                f"Maven could not fetch {MAVEN_COORDINATES.format(version=cfg.version)}:\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        _verify(cfg, downloaded)
        downloaded.replace(cfg.zip_path)
    # The artifact now lives in our cache; Maven's copy is not needed twice.
    shutil.rmtree(cfg.cache_dir / "m2" / "org" / "opensearch", ignore_errors=True)
    return cfg.zip_path


def _service_account() -> tuple[int, int] | None:
    """(uid, gid) of the unprivileged user to run as, creating it when we are root; None if not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise NodeError(f"could not create system user {SERVICE_USER}: {result.stderr.strip()}")
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, account: tuple[int, int] | None) -> None:
    if account is None:
        return
    uid, gid = account
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def install(cfg: NodeConfig) -> Path:
    """Unpack the distribution once into ``cfg.install_dir`` and add the modules it lacks (idempotent)."""
    marker = cfg.install_dir / ".qrw-installed"
    if not marker.exists():
        _unpack(cfg)
        marker.write_text(cfg.version)
    install_modules(cfg.install_dir, cfg.version, cfg.cache_dir / "opensearch" / cfg.version / "modules")
    return cfg.install_dir


def _unpack(cfg: NodeConfig) -> None:
    archive = fetch_distribution(cfg)
    cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.runtime_dir, 0o755)
    staging = Path(tempfile.mkdtemp(dir=cfg.runtime_dir, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
        (top,) = [p for p in staging.iterdir() if p.is_dir()]
        for script in (top / "bin").iterdir():
            script.chmod(0o755)
        shutil.rmtree(cfg.install_dir, ignore_errors=True)
        top.replace(cfg.install_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Start, wait, stop
# ---------------------------------------------------------------------------------------------


def _java_home() -> str:
    for variable in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            return os.environ[variable]
    java = shutil.which("java")
    if java is None:
        raise NodeError(
            "no Java runtime found: OpenSearch 2.19 needs JDK 11, 17 or 21",
            hint="apt-get install openjdk-17-jre-headless, or set OPENSEARCH_JAVA_HOME",
        )
    return str(Path(java).resolve().parent.parent)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A currently free TCP port on loopback whose +100 neighbour (transport) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 100 <= 65535 and not _port_in_use(port + 100):
            return port
    raise NodeError("could not find a free port pair on 127.0.0.1")


def free_port_range(count: int) -> int:
    """A base port such that ``base .. base+count-1`` and their +100 transport neighbours are free on loopback."""
    for _ in range(50):
        base = free_port()
        if base + 100 + count <= 65535 and not any(_port_in_use(base + i) or _port_in_use(base + 100 + i) for i in range(count)):
            return base
    raise NodeError(f"could not find {count} free port pairs on 127.0.0.1")


def cluster_health(url: str, timeout: float = 2.0) -> dict | None:
    """The cluster health JSON, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _read_pid(cfg: NodeConfig) -> int | None:
    pid_file = cfg.node_dir / "opensearch.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def _log_tail(cfg: NodeConfig, lines: int = 30) -> str:
    logs = sorted((cfg.node_dir / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
    logs += [cfg.node_dir / "logs" / "console.out"] if (cfg.node_dir / "logs" / "console.out").exists() else []
    if not logs:
        return "(no log written)"
    return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])


def cluster_name(cfg: NodeConfig) -> str:
    """The cluster name a node of this config runs with: how a node on a port is recognised as ours."""
    return cfg.cluster_name


def running_here(cfg: NodeConfig) -> bool:
    """True when this name's node runs (its pid file is alive) and is what answers on ``cfg.port``.

    The cluster name must match too: a pid file can outlive its node, and another program may have
    taken the port since; neither may be taken for ours.
    """
    if _read_pid(cfg) is None:
        return False
    health = cluster_health(cfg.http_url)
    return bool(health) and health.get("cluster_name") == cfg.cluster_name


def is_running(cfg: NodeConfig) -> bool:
    """A process from this node's pid file is alive and answers on its port as this node's cluster."""
    return running_here(cfg)


def port_in_use(port: int) -> bool:
    """Whether anything accepts connections on ``127.0.0.1:port``."""
    return _port_in_use(port)


def _transport_port(http_port: int) -> int:
    """``http_port + 100`` when free, else any free loopback port: a single node talks to nobody on it,
    but a taken transport port would stop it from starting (another node's, say)."""
    if http_port + 100 <= 65535 and not _port_in_use(http_port + 100):
        return http_port + 100
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(cfg: NodeConfig, *, reuse: bool = True) -> str:
    """Start the node and wait for yellow health; return its URL.

    ``reuse``: a node already running from this folder is taken as it is (idempotent start). With
    ``reuse=False`` (the sandbox) that is an error: a caller that did not start a node must neither
    use nor stop it.
    """
    if is_running(cfg):
        if reuse:
            return cfg.http_url
        raise NodeError(
            f"an OpenSearch node named {cfg.name!r} already runs at {cfg.http_url}, started by someone else",
            hint=f"stop it with `qrw opensearch stop --name {cfg.name} --port {cfg.port}`, or use another --port",
        )
    launch(cfg)
    return wait_healthy(cfg)


def launch(cfg: NodeConfig) -> None:
    """Start the node's process (daemonised) without waiting for it to be healthy."""
    if _port_in_use(cfg.port):
        raise NodeError(
            f"port {cfg.port} on 127.0.0.1 is taken by another process",
            hint="stop it, or pass --port with a free port",
        )
    home = install(cfg)
    account = _service_account()
    node_dir = cfg.node_dir
    conf_dir = node_dir / "config"
    if not conf_dir.exists():
        node_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(home / "config", conf_dir)
    for sub in ("data", "logs"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    (node_dir / "opensearch.pid").unlink(missing_ok=True)
    _chown_tree(home, account)
    _chown_tree(node_dir, account)
    for parent in (cfg.runtime_dir, cfg.runtime_dir / "nodes"):
        os.chmod(parent, 0o755)

    env = {
        # runuser needs /usr/sbin on PATH for the JVM's own helpers; harmless otherwise.
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
        "OPENSEARCH_JAVA_HOME": _java_home(),
        "OPENSEARCH_PATH_CONF": str(conf_dir),
        "OPENSEARCH_JAVA_OPTS": f"-Xms{cfg.heap} -Xmx{cfg.heap}",
        "HOME": str(node_dir),
    }
    command = [str(home / "bin" / "opensearch"), "-d", "-p", str(node_dir / "opensearch.pid"), *node_settings(cfg)]
    if account is not None:
        command = ["runuser", "-u", SERVICE_USER, "--", *command]
    # The daemon inherits our stdout/stderr: pipes would keep subprocess.run waiting for the
    # daemon's exit, so its start-up output goes to a file instead. Its own session: a Ctrl-C in the
    # terminal that started it must not reach the node (the caller stops what it started).
    console = node_dir / "logs" / "console.out"
    with console.open("w") as sink:
        result = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=node_dir,
                                start_new_session=True)
    if result.returncode != 0:
        raise NodeError(
            f"OpenSearch did not start (exit {result.returncode}):\n{console.read_text(errors='replace')[-2000:]}",
            hint=f"logs are in {node_dir / 'logs'}",
        )


def node_settings(cfg: NodeConfig) -> list[str]:
    """The ``-E`` settings of one node: loopback only, single-node discovery or the cluster's seeds."""
    settings = [
        "-Enetwork.host=127.0.0.1",
        f"-Ehttp.port={cfg.port}",
        f"-Etransport.port={cfg.transport if cfg.transport_port or cfg.seed_transport_ports else _transport_port(cfg.port)}",
        f"-Epath.data={cfg.node_dir / 'data'}",
        f"-Epath.logs={cfg.node_dir / 'logs'}",
        f"-Ecluster.name={cfg.cluster_name}",
        f"-Enode.name={cfg.name}",
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        "-Eaction.destructive_requires_name=false",
    ]
    if cfg.seed_transport_ports:
        settings += [
            "-Ediscovery.seed_hosts=" + ",".join(f"127.0.0.1:{p}" for p in cfg.seed_transport_ports),
            "-Ecluster.initial_cluster_manager_nodes=" + ",".join(cfg.initial_managers),
        ]
    else:
        settings.append("-Ediscovery.type=single-node")
    return settings


def wait_healthy(cfg: NodeConfig, *, nodes: int = 1) -> str:
    """Wait until the node answers yellow or green health with ``nodes`` members in its cluster."""
    node_dir = cfg.node_dir
    started = time.monotonic()
    deadline = started + cfg.start_timeout_s
    seen_pid = False
    while time.monotonic() < deadline:
        health = cluster_health(cfg.http_url)
        if health and health.get("status") in ("yellow", "green") and health.get("number_of_nodes", 1) >= nodes:
            (node_dir / "node.json").write_text(
                json.dumps({"url": cfg.http_url, "port": cfg.port, "version": cfg.version, "name": cfg.name})
            )
            return cfg.http_url
        alive = _read_pid(cfg) is not None
        seen_pid |= alive
        # The JVM writes its pid file only once it has bootstrapped: under load that takes a while, so
        # "exited" means the pid went away after it was seen, or never came within 90 s.
        if not alive and (seen_pid or time.monotonic() > started + 90):
            raise NodeError(
                f"OpenSearch exited during start-up. Last log lines:\n{_log_tail(cfg)}",
                hint=f"logs are in {node_dir / 'logs'}",
            )
        time.sleep(1.0)
    raise NodeError(
        f"OpenSearch did not become healthy within {cfg.start_timeout_s:.0f}s. Last log lines:\n{_log_tail(cfg)}",
        hint=f"logs are in {node_dir / 'logs'}",
    )


def stop(cfg: NodeConfig, timeout_s: float = 60.0) -> bool:
    """Stop the node from its pid file; True if a running node was stopped."""
    pid = _read_pid(cfg)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _read_pid(cfg) is None:
            break
        time.sleep(0.5)
    else:
        os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
    (cfg.node_dir / "opensearch.pid").unlink(missing_ok=True)
    return True


def status(cfg: NodeConfig) -> dict:
    """A small report: is the process alive, does the HTTP port answer, and with what health."""
    pid = _read_pid(cfg)
    health = cluster_health(cfg.http_url) if pid is not None else None
    return {
        "name": cfg.name,
        "url": cfg.http_url,
        "version": cfg.version,
        "pid": pid,
        "running": pid is not None,
        "health": health.get("status") if health else None,
        "node_dir": str(cfg.node_dir),
    }


def destroy(cfg: NodeConfig) -> None:
    """Stop the node and delete its folder (data and logs). Used by the test session teardown."""
    stop(cfg)
    shutil.rmtree(cfg.node_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Several nodes: one cluster on loopback
# ---------------------------------------------------------------------------------------------


def cluster_members(cfg: NodeConfig, nodes: int) -> list[NodeConfig]:
    """The member configs of an ``nodes``-node cluster named after ``cfg``: ``<name>-0`` on ``port``,
    ``<name>-1`` on ``port + 1``, ... (transport ports from ``port + 100`` on), all cluster-manager
    eligible. Indices get OpenSearch's default of one replica per shard, so any one node may die."""
    if not 1 <= nodes <= 9:
        raise NodeError(f"--nodes {nodes} is out of range 1..9")
    if nodes == 1:
        return [cfg]
    names = tuple(f"{cfg.name}-{i}" for i in range(nodes))
    seeds = tuple(cfg.transport + i for i in range(nodes))
    return [
        dataclasses.replace(cfg, name=names[i], port=cfg.port + i, transport_port=seeds[i], cluster=f"qrw-{cfg.name}",
                            seed_transport_ports=seeds, initial_managers=names)
        for i in range(nodes)
    ]


def _cluster_file(cfg: NodeConfig) -> Path:
    return cfg.runtime_dir / "nodes" / f"{cfg.name}.cluster.json"


def recorded_size(cfg: NodeConfig) -> int:
    """How many nodes ``start_cluster`` last started under this name (1 when none was recorded)."""
    try:
        return int(json.loads(_cluster_file(cfg).read_text())["nodes"])
    except (FileNotFoundError, ValueError, KeyError):
        return 1


def start_cluster(cfg: NodeConfig, nodes: int, *, reuse: bool = True) -> list[str]:
    """Start every member that is not running, then wait until the cluster has all ``nodes``."""
    members = cluster_members(cfg, nodes)
    if nodes == 1:
        return [start(cfg, reuse=reuse)]
    running = [m for m in members if is_running(m)]
    if running and not reuse:
        raise NodeError(f"cluster {cfg.name!r} already has running nodes ({', '.join(m.name for m in running)})",
                        hint=f"stop it with `qrw opensearch stop --name {cfg.name} --nodes {nodes}`")
    cfg.runtime_dir.joinpath("nodes").mkdir(parents=True, exist_ok=True)
    _cluster_file(cfg).write_text(json.dumps({"nodes": nodes, "port": cfg.port, "version": cfg.version}))
    for member in members:
        if member not in running:
            launch(member)
    return [wait_healthy(member, nodes=nodes) for member in members]


def stop_cluster(cfg: NodeConfig, nodes: int) -> int:
    """Stop every member; returns how many were running."""
    stopped = sum(stop(member) for member in cluster_members(cfg, nodes))
    _cluster_file(cfg).unlink(missing_ok=True)
    return stopped


def destroy_cluster(cfg: NodeConfig, nodes: int) -> None:
    for member in cluster_members(cfg, nodes):
        destroy(member)
    _cluster_file(cfg).unlink(missing_ok=True)


def kill(cfg: NodeConfig) -> int | None:
    """SIGKILL the node (a crash, for failover tests); returns the pid killed, or None."""
    pid = _read_pid(cfg)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _read_pid(cfg) is not None:
        time.sleep(0.2)
    (cfg.node_dir / "opensearch.pid").unlink(missing_ok=True)
    return pid
