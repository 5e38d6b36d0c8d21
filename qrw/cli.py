"""The ``qrw`` command line: thin wrappers that turn flags into configs and call one function.

Heavy imports (torch, onnxruntime, starlette) happen inside subcommands, so ``qrw --help`` and the
OpenSearch commands start fast. Every ``QrwError`` becomes one ``Error: …`` line and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from qrw.errors import QrwError

# Subcommands that live with their own package, loaded only when called: name -> "module:attr".
LAZY_COMMANDS = {
    "opensearch": "qrw.search.cli:opensearch",
    "index": "qrw.search.cli:index_command",
    "profile": "qrw.search.cli:profile_group",
    "eval": "qrw.eval.cli:eval_command",
    "baselines": "qrw.eval.cli:baselines_command",
    "train": "qrw.trainer.cli:train",
    "proxy": "qrw.proxy_cli:proxy",
    "precompute": "qrw.plugin.precompute_cli:precompute",
    "calibrate": "qrw.eval.calibrate_cli:calibrate",
    "model": "qrw.model_cli:model_group",
    "sandbox": "qrw.sandbox:sandbox",
    "page": "qrw.sandbox.command:page",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("qrw"):
                    return None  # that part of the product is not installed in this build
                raise
            return getattr(module, attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qrw")
def cli() -> None:
    """Relevance-gated LLM query rewriting for OpenSearch."""


def run_command(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """Run a click command, turning expected errors into one ``Error:`` line and exit code 2.

    Shared by every console script (``qrw``, ``qrw-export``) so they fail the same way.
    """
    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except QrwError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qrw``."""
    return run_command(cli, argv, "qrw")


if __name__ == "__main__":
    sys.exit(main())
