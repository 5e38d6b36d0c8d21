"""``qrw train``: data, pretrain, sft, grpo, evaluate.

Thin: every stage's options are generated from its config dataclass (the one source of defaults and
help texts); ``--config FILE.yaml`` is read first and flags given on the command line override it;
unknown YAML keys fail. Heavy imports (torch, trl) happen inside the commands.

Multi-GPU: the same stage runs under accelerate, e.g.
``accelerate launch --config_file trainer/accelerate/multi_gpu.yaml -m qrw.trainer.cli sft --config sft.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import click

from qrw.trainer.config import load_config

_MULTIPLE_NAMES = {"models": "model"}


def _option_for(f: dataclasses.Field, hint) -> click.Option:
    flag = "--" + _MULTIPLE_NAMES.get(f.name, f.name).replace("_", "-")
    help_text = f.metadata.get("help", "")
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if origin in (typing.Union, __import__("types").UnionType) and len(args) == 1 else hint
    if base is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=None, help=help_text)
    if typing.get_origin(base) is list or base is list:
        return click.Option([flag, f.name], multiple=True, default=None, help=help_text + " (repeatable)")
    if typing.get_origin(base) is dict or base is dict:
        return click.Option([flag, f.name], default=None, help=help_text + " (YAML mapping, e.g. '{a: 1}')")
    click_type = {int: int, float: float}.get(base, str)
    return click.Option([flag, f.name], type=click_type, default=None, help=help_text, show_default=False)


def config_command(name: str, config_cls: type, runner_path: str, summary: str) -> click.Command:
    """A click command whose options mirror ``config_cls``; it loads the config and calls the runner."""
    hints = typing.get_type_hints(config_cls)
    params: list[click.Parameter] = [
        click.Option(["--config", "config_path"], type=click.Path(exists=True, dir_okay=False), default=None,
                     help="YAML file of config keys (flags override it)"),
        click.Option(["--print-config"], is_flag=True, default=False, help="print the resolved config and exit"),
    ]
    for f in dataclasses.fields(config_cls):
        params.append(_option_for(f, hints[f.name]))

    def callback(config_path, print_config, **values):
        overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()
                     if v is not None and not (isinstance(v, tuple) and not v)}
        config = load_config(config_cls, config_path, overrides)
        if print_config:
            from qrw.trainer.config import config_to_dict

            click.echo(json.dumps(config_to_dict(config), indent=2))
            return
        import importlib

        module_name, attr = runner_path.split(":")
        result = getattr(importlib.import_module(module_name), attr)(config)
        summary_keys = ("stage", "output_dir", "steps", "seconds", "files", "tag_balance", "results",
                    "cv_gain", "cv_harm", "ungated_gain", "ungated_harm", "best", "agreement_with_opensearch")
        click.echo(json.dumps({k: result[k] for k in summary_keys if k in result}, indent=2, default=str))

    return click.Command(name, params=params, callback=callback, help=summary)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Build training data, fine-tune (SFT, GRPO) and evaluate the rewriter."""


def _register() -> None:
    from qrw.trainer.calibrate import CalibrateConfig
    from qrw.trainer.data import DataConfig
    from qrw.trainer.evaluate import EvaluateConfig
    from qrw.trainer.grpo import GrpoStageConfig
    from qrw.trainer.pretrain import PretrainStageConfig
    from qrw.trainer.sft import SftStageConfig

    train.add_command(config_command("data", DataConfig, "qrw.trainer.data:build_data",
                                     "Build rewrite and tagging JSONL (train/valid folds) and a data card."))
    train.add_command(config_command("pretrain", PretrainStageConfig, "qrw.trainer.pretrain:run_pretrain",
                                     "Optional continued pretraining on catalog text."))
    train.add_command(config_command("sft", SftStageConfig, "qrw.trainer.sft:run_sft",
                                     "Multi-task SFT (rewrite + tag) with trl's SFTTrainer."))
    train.add_command(config_command("grpo", GrpoStageConfig, "qrw.trainer.grpo:run_grpo",
                                     "GRPO with retrieval rewards (relevance, SIMULATED conversion, validity, drift)."))
    train.add_command(config_command("calibrate", CalibrateConfig, "qrw.trainer.calibrate:run_calibrate",
                                     "Choose the gate on held-out pseudo-queries and write serving.yaml into the model."))
    train.add_command(config_command("evaluate", EvaluateConfig, "qrw.trainer.evaluate:run_evaluate",
                                     "Evaluate checkpoints on the validation fold, side by side."))


_register()


if __name__ == "__main__":  # `accelerate launch -m qrw.trainer.cli ...`
    import sys

    from qrw.errors import QrwError

    try:
        train.main(standalone_mode=False)
    except QrwError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
