"""Every code block of the README runs in the suite, so the README cannot go stale.

Each block has a policy below, keyed by its first line; a new block without one fails the suite.

* ``run``: executed with bash (``set -euo pipefail``) or python in a scratch folder that links the
  checkout's ``.venv``, ``examples`` and ``models`` and the shared data, against the session's
  OpenSearch. The README's default ports are replaced: 9200 by the session node's port, 9201, 8080,
  19200, 19201 and 18080 by free ones. The default rewriter is the session's tiny exported model
  (``QRW_DEFAULT_REWRITER``, the documented override), so nothing is exported for minutes.
* ``serve``: a long-running command (the sandbox): started, the page port must answer, then Ctrl-C
  must stop it with exit code 0.
* ``make``: ``make -n`` with the block's targets and variables; the targets' commands are what
  ``tests/sandbox/test_sandbox_command.py`` runs (``make test`` cannot run inside itself).
* ``parse``: each command is checked by the real CLI's own parser (options, types), not run: GPU
  exports, training runs, Docker, or names a reader replaces (``their-products``). The reason is
  given per block.

A block that runs and fails because its section (owned elsewhere) is stale is ``xfail(strict=True)``
with the fix named: once the section is fixed the block passes, and the strict xfail fails until the
entry is removed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from qrw.search import node as os_node

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


@dataclasses.dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    section: str

    @property
    def key(self) -> str:
        return self.text.strip().splitlines()[0].strip()


def readme_blocks() -> list[Block]:
    blocks, section, lines = [], "", README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(start + 1, match.group(1), "\n".join(body) + "\n", section))
        i += 1
    return blocks


POLICY: dict[str, tuple[str, str]] = {
    "make sandbox   # set up .venv, start OpenSearch, index the catalog, print the baseline evaluation,":
        ("make", "make test cannot run inside the suite; the sandbox's command runs in test_sandbox_command.py"),
    "make sandbox OPENSEARCH_PORT=19200 PROXY_PORT=19201 PAGE_PORT=18080    # page on http://127.0.0.1:18080/":
        ("make", "the ports reach `qrw sandbox`; that command runs on free ports in test_sandbox_command.py"),
    "export QRW_OPENSEARCH_URL=http://127.0.0.1:9200   # your OpenSearch (e.g. `qrw opensearch start`, or the sandbox's)":
        ("run", ""),
    ".venv/bin/qrw profile infer --index their-products --out runs/profiles/theirs.yaml":
        ("parse", "names the reader's own index and judgments; tests/e2e/test_second_catalog.py runs this path"),
    '.venv/bin/qrw sandbox --url "$QRW_OPENSEARCH_URL" --profile runs/profiles/shop.yaml \\':
        ("serve", ""),
    ".venv/bin/qrw eval --judgments ../shared/data/icecat/judgments/judgments.csv --json out.json":
        ("run", ""),
    ".venv/bin/qrw baselines --out docs/eval      # writes docs/eval/baselines.{md,json}":
        ("parse", "tests/core/test_baseline.py runs the same selection and checks it chooses the shipped default"),
    ".venv/bin/qrw-export --model CKPT --out DIR --target cpu [--int8]   # CPU (the qrw graph; --int4: 4-bit)":
        ("parse", "placeholders; a real export takes minutes (CPU) or a GPU; tests/export/ exports a tiny model"),
    "from qrw.plugin import RewritingOpenSearch            # an opensearchpy.OpenSearch subclass":
        ("run", ""),
    ".venv/bin/qrw proxy --upstream http://127.0.0.1:9200 [--upstream http://127.0.0.1:9202] --model DIR \\":
        ("parse", "placeholders (DIR, FILE); the proxy runs in tests/plugin/test_proxy.py and the sandbox tests"),
    ".venv/bin/qrw model list            # the cached exports, their source and target, and the default":
        ("run", ""),
    "qrw-export --model models/default-rewriter --out docker/models/default --target cpu":
        ("parse", "no Docker engine on the project's machines (see the Docker section)"),
    ".venv/bin/qrw train data --output-dir runs/v2/data       # writes runs/v2/data/split.json (the folds)":
        ("parse", "the data build takes 10+ minutes on CPU; the trainer tests run a tiny pipeline and tests/core/test_compare.py the comparison"),
}
XFAIL: dict[str, str] = {}

BLOCKS = readme_blocks()


def test_every_block_has_a_policy():
    missing = [f"README.md:{b.line} ({b.section}): {b.key!r}" for b in BLOCKS if b.key not in POLICY]
    assert not missing, "add these README blocks to POLICY in tests/layout/test_readme.py:\n" + "\n".join(missing)
    unused = set(POLICY) - {b.key for b in BLOCKS}
    assert not unused, f"POLICY names blocks the README no longer has: {sorted(unused)}"


# -- commands as the shell sees them -----------------------------------------------------------------


def commands(text: str) -> list[list[str]]:
    """Each command of a bash block as argv (continuations joined, comments dropped, [optional] groups opened)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        tokens = [t.strip("[]") for t in tokens if t.strip("[]")]
        if tokens:
            out.append(tokens)
    return out


def parse_with_the_cli(argv: list[str]) -> None:
    """Let the real command parse ``argv`` (options, choices, types) without running it."""
    import click

    program = Path(argv[0]).name
    if program == "qrw":
        from qrw.cli import cli as command
    elif program == "qrw-export":
        from qrw.export.cli import export_command as command
    else:
        raise AssertionError(f"unknown program {argv[0]}")
    args = argv[1:]
    while True:
        ctx = command.make_context(program, list(args), resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        with warnings.catch_warnings():  # click 8.2+ deprecates reading protected_args; it still holds the name
            warnings.simplefilter("ignore", DeprecationWarning)
            name, *rest = ctx.protected_args + ctx.args
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{program} has no command {name!r}"
        command, program, args = sub, f"{program} {name}", rest


def check_parse(block: Block) -> None:
    for argv in commands(block.text):
        if argv[0] == "docker":
            compose = argv[argv.index("-f") + 1]
            assert (REPO / compose).is_file(), compose
        elif argv[0] == "curl":
            continue
        else:
            parse_with_the_cli(argv)


def check_make(block: Block) -> None:
    for argv in commands(block.text):
        assert argv[0] == "make"
        result = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        variables = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
        if argv[1] == "sandbox":
            line = next(x for x in result.stdout.splitlines() if "qrw sandbox" in x)
            ports = (variables.get("OPENSEARCH_PORT", "9200"), variables.get("PROXY_PORT", "9201"),
                     variables.get("PAGE_PORT", "8080"))
            assert f"--port {ports[0]} --proxy-port {ports[1]} --page-port {ports[2]}" in line, line


# -- running blocks -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir) -> Path:
    """A scratch folder that looks like the checkout to the README's relative paths."""
    root = tmp_path_factory.mktemp("readme")
    work = root / "qrw"
    work.mkdir()
    for name in (".venv", "examples", "models"):
        (work / name).symlink_to(REPO / name)
    (root / "shared" / "data").mkdir(parents=True)
    (root / "shared" / "data" / "icecat").symlink_to(data_dir)
    return work


@pytest.fixture(scope="module")
def ports(opensearch_node) -> dict[str, str]:
    mapping = {"9200": str(opensearch_node.port)}
    for default in ("9201", "8080", "19200", "19201", "18080"):
        mapping[default] = str(os_node.free_port())
    return mapping


@pytest.fixture(scope="module")
def env(opensearch_node, model_cache, stored_tiny_export) -> dict[str, str]:
    return {**os.environ, "QRW_OPENSEARCH_URL": opensearch_node.http_url, "QRW_CACHE_DIR": str(model_cache),
            "QRW_DEFAULT_REWRITER": str(stored_tiny_export), "PYTHONUNBUFFERED": "1"}


def with_ports(text: str, ports: dict[str, str]) -> str:
    return re.sub(r"\b(9200|9201|8080|19200|19201|18080)\b", lambda m: ports[m.group(1)], text)


def run_block(block: Block, workdir: Path, env: dict, ports: dict) -> subprocess.CompletedProcess:
    text = with_ports(block.text, ports)
    if block.lang == "python":
        code = "import logging; logging.basicConfig(level=logging.WARNING)\n" + text
        return subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def serve_block(block: Block, workdir: Path, env: dict, ports: dict) -> None:
    text = with_ports(block.text, ports)
    page_port = re.search(r"--page-port (\d+)", text).group(1)
    process = subprocess.Popen(["bash", "-c", "exec " + text.strip()], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the page never answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{page_port}/?q=sofa", timeout=30) as response:
                    assert response.status == 200 and "Rewritten" in response.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0, process.stdout.read()


def _params():
    params = []
    for block in BLOCKS:
        mode, reason = POLICY.get(block.key, ("missing", ""))
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[block.key])] if block.key in XFAIL else []
        if mode in ("run", "serve"):
            marks.append(pytest.mark.opensearch)
        params.append(pytest.param(block, mode, id=f"line{block.line}-{mode}", marks=marks))
    return params


@pytest.mark.parametrize("block, mode", _params())
def test_readme_block(block: Block, mode: str, request):
    if mode == "parse":
        check_parse(block)
    elif mode == "make":
        check_make(block)
    elif mode in ("run", "serve"):
        workdir, env, ports = (request.getfixturevalue(name) for name in ("workdir", "env", "ports"))
        request.getfixturevalue("indexed_catalog")
        if mode == "serve":
            serve_block(block, workdir, env, ports)
            return
        result = run_block(block, workdir, env, ports)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "serving original queries" not in result.stderr, result.stderr[-2000:]
    else:
        pytest.fail(f"README.md:{block.line} has no policy (see test_every_block_has_a_policy)")
