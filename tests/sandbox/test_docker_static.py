"""Static checks of docker/: no Docker engine runs on these machines, so the files are parsed and
every file, build argument and command they reference is checked to exist."""

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from qrw.cli import cli

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def compose():
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def dockerfile_args():
    return set(re.findall(r"^ARG (\w+)", (DOCKER / "Dockerfile").read_text(), flags=re.M))


def test_compose_parses_and_has_services():
    services = compose()["services"]
    assert set(services) == {"opensearch", "indexer", "proxy", "page"}
    assert services["opensearch"]["image"].startswith("opensearchproject/opensearch:")
    assert "DISABLE_SECURITY_PLUGIN=true" in services["opensearch"]["environment"]


def test_build_contexts_dockerfiles_and_args_exist():
    args = dockerfile_args()
    for name, service in compose()["services"].items():
        build = service.get("build")
        if not build:
            continue
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).is_file(), name
        assert set(build.get("args", {})) <= args, f"{name} passes an ARG the Dockerfile lacks"


def test_dockerfile_copies_existing_paths():
    for source in re.findall(r"^COPY (\S+) ", (DOCKER / "Dockerfile").read_text(), flags=re.M):
        assert (REPO / source).exists(), source
    assert '".[${RUNTIME}]"' in (DOCKER / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r"^serve = \[", pyproject, flags=re.M) and re.search(r"^gpu = \[", pyproject, flags=re.M)


def test_compose_commands_are_real_cli_commands():
    """Each service command must be accepted by the real CLI's --help (options included)."""
    runner = CliRunner()
    for name, service in compose()["services"].items():
        command = service.get("command")
        if not command:
            continue
        assert command[0] == "qrw", name
        sub = cli.get_command(None, command[1])
        assert sub is not None, f"{name}: qrw {command[1]} does not exist"
        options = {p for p in command[2:] if p.startswith("--")}
        declared = {opt for param in sub.params for opt in param.opts}
        assert options <= declared, f"{name}: unknown options {options - declared}"
        assert runner.invoke(sub, ["--help"]).exit_code == 0
