"""Config loading and the `qrw train` command line (no model, no OpenSearch)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from qrw.errors import ConfigError
from qrw.trainer.cli import train
from qrw.trainer.config import load_config
from qrw.trainer.data import DataConfig
from qrw.trainer.grpo import GrpoStageConfig
from qrw.trainer.sft import SftStageConfig


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("max_steps: 7\nlearning_rate: 1e-4\ntask_mix: {rewrite: 2, tag: 0.5}\n")
    config = load_config(SftStageConfig, path, {"max_steps": "9", "lora": "true"})
    assert config.max_steps == 9 and config.learning_rate == 1e-4 and config.lora is True
    assert config.task_mix == {"rewrite": 2.0, "tag": 0.5}
    assert config.per_device_train_batch_size == SftStageConfig().per_device_train_batch_size


@pytest.mark.parametrize("layer, message", [
    ({"max_step": 3}, "unknown config key 'max_step'"),
    ({"learning_rate": "fast"}, "expected a number"),
    ({"task_mix": {"rewrite": 1, "chat": 1}}, "unknown task"),
    ({"lora": "maybe"}, "true/false"),
])
def test_bad_configs_fail_with_a_named_key(layer, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SftStageConfig, None, layer)


def test_grpo_config_checks_group_divisibility():
    with pytest.raises(ConfigError, match="not divisible by num_generations"):
        load_config(GrpoStageConfig, None, {"per_device_train_batch_size": 6, "num_generations": 4})
    with pytest.raises(ConfigError, match="unknown reward"):
        load_config(GrpoStageConfig, None, {"reward_weights": {"clicks": 1.0}})


def test_data_config_checks_folds():
    with pytest.raises(ConfigError, match="valid_fold"):
        load_config(DataConfig, None, {"folds": 3, "valid_fold": 3})


@pytest.mark.parametrize("command", ["data", "pretrain", "sft", "grpo", "evaluate"])
def test_every_subcommand_has_help(command):
    result = CliRunner().invoke(train, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--config" in result.output


def test_cli_unknown_yaml_key_fails(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bogus: 1\n")
    result = CliRunner().invoke(train, ["sft", "--config", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)


def test_cli_print_config_applies_flags():
    result = CliRunner().invoke(train, ["grpo", "--print-config", "--beta", "0", "--num-generations", "2"])
    assert result.exit_code == 0, result.output
    assert '"beta": 0.0' in result.output and '"num_generations": 2' in result.output
