"""The whole pipeline on the tiny model, on CPU: data, SFT, GRPO (the measured-gain reward against the
real OpenSearch node), resume, calibrate, evaluate; the checkpoints load and give rewrites and tag
probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.opensearch


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def _changed(before, after) -> bool:
    return any(not (before[k] == after[k]).all() for k in before if k in after)


@pytest.fixture(scope="module")
def sft_dir(built_data, tiny_model_dir, tmp_path_factory):
    from qrw.trainer.sft import SftStageConfig, run_sft

    config, _ = built_data
    out = tmp_path_factory.mktemp("sft")
    card = run_sft(SftStageConfig(model=str(tiny_model_dir), data_dir=config.output_dir, output_dir=str(out),
                                  max_steps=6, learning_rate=3e-3, logging_steps=2, save_steps=3,
                                  per_device_train_batch_size=8, task_mix={"rewrite": 1.0, "tag": 0.5},
                                  progress=False))
    assert card["steps"] == 6
    return out


@pytest.fixture(scope="module")
def grpo_dir(built_data, sft_dir, opensearch_url, indexed_catalog, tmp_path_factory):
    from qrw.trainer.grpo import GrpoStageConfig, run_grpo

    config, _ = built_data
    out = tmp_path_factory.mktemp("grpo")
    card = run_grpo(GrpoStageConfig(model=str(sft_dir), data_dir=config.output_dir, output_dir=str(out),
                                    reward_backend="opensearch", url=opensearch_url, index=indexed_catalog,
                                    max_steps=3, learning_rate=1e-3, max_prompts=64,
                                    per_device_train_batch_size=4, num_generations=4, max_completion_length=10,
                                    beta=0.02, logging_steps=1, save_steps=100, progress=False))
    assert card["steps"] == 3
    return out


def test_sft_trains_and_writes_card_and_plot(sft_dir, tiny_model_dir):
    assert _changed(_weights(tiny_model_dir), _weights(sft_dir))
    card = json.loads((sft_dir / "training_card.json").read_text())
    assert card["stage"] == "sft" and card["data_sizes"]["rewrite_examples"] > 0 and "loss" in card["final_metrics"]
    assert (sft_dir / "loss.png").stat().st_size > 1000 and (sft_dir / "training_card.md").is_file()
    assert (sft_dir / "tokenizer.json").is_file() and (sft_dir / "config.yaml").is_file()


def test_sft_resumes_from_the_last_checkpoint(built_data, sft_dir, tiny_model_dir):
    from qrw.trainer.sft import SftStageConfig, run_sft

    config, _ = built_data
    card = run_sft(SftStageConfig(model=str(tiny_model_dir), data_dir=config.output_dir, output_dir=str(sft_dir) + "-resumed",
                                  max_steps=8, learning_rate=3e-3, save_steps=3, per_device_train_batch_size=8,
                                  task_mix={"rewrite": 1.0, "tag": 0.5}, progress=False,
                                  resume_from_checkpoint=str(sft_dir / "checkpoints" / "checkpoint-6")))
    assert card["steps"] == 8


def test_a_time_limit_stops_training_and_still_saves(built_data, tiny_model_dir, tmp_path):
    from qrw.trainer.sft import SftStageConfig, run_sft

    config, _ = built_data
    card = run_sft(SftStageConfig(model=str(tiny_model_dir), data_dir=config.output_dir, output_dir=str(tmp_path / "capped"),
                                  max_steps=500, max_minutes=1e-6, learning_rate=3e-3, logging_steps=1, save_steps=1000,
                                  per_device_train_batch_size=8, task_mix={"rewrite": 1.0, "tag": 0.5}, progress=False))
    assert card["steps"] == 1 and card["stopped_by_time_limit"] is True  # the first step already spent the budget
    assert (tmp_path / "capped" / "model.safetensors").is_file()


def test_grpo_trains_with_retrieval_rewards(grpo_dir, sft_dir):
    assert _changed(_weights(sft_dir), _weights(grpo_dir))
    card = json.loads((grpo_dir / "training_card.json").read_text())
    metrics = card["final_metrics"]
    for name in ("relevance", "conversion_simulated", "validity", "drift_guard"):
        assert f"rewards/{name}/mean" in metrics
    assert "SIMULATED" in card["note"]
    assert (grpo_dir / "reward.png").is_file() and (grpo_dir / "loss.png").is_file()


def test_checkpoint_generates_rewrites_and_tag_probabilities(grpo_dir):
    from qrw.plugin.model import RewriteModel
    from qrw.trainer.model import TorchRewriteModel

    model = TorchRewriteModel(grpo_dir, max_new_tokens=8, strategy="greedy")
    assert isinstance(model, RewriteModel)
    rewrites = model.generate(["hp toner", "laptop"], 3)
    assert len(rewrites) == 2 and all(isinstance(r, str) and r for row in rewrites for r in row)
    assert all(len(row) <= 3 for row in rewrites)
    probs = model.tag([("hp toner", "HP toner cartridge"), ("laptop", "mouse")])
    assert [set(p) for p in probs] == [{"exact", "substitute", "weak", "irrelevant"}] * 2
    assert all(abs(sum(p.values()) - 1.0) < 1e-5 for p in probs)


def test_calibration_ships_a_gate_with_the_model(built_data, grpo_dir, tmp_path):
    import shutil

    import yaml

    from qrw.plugin.config import SERVING_NAME, load_config
    from qrw.trainer.calibrate import CalibrateConfig, run_calibrate

    config, _ = built_data
    model_dir = tmp_path / "model"
    shutil.copytree(grpo_dir, model_dir)
    report = run_calibrate(CalibrateConfig(model=str(model_dir), data_dir=config.output_dir, queries=40, batch_size=8,
                                           folds=2, full_min=[0.5, 1.01], keep_min=[1.01], full_weight=[0.5],
                                           down_weight=[0.1], progress=False))
    assert report["queries"] == 40 and len(report["folds"]) == 2 and report["cv_harm"] <= 1.0
    # a PyTorch checkpoint decodes its own way: only the model's own trigger is measured
    assert report["propose"] is False and set(report["modes"]) == {"propose=False"}
    # the judged training queries of the split (real queries) vetoed points, and are reported
    split = json.loads((Path(config.output_dir) / "split.json").read_text())
    assert 0 < report["judged_training_queries"] <= len(split["train_queries"])
    # the grid holds a point that serves nothing (full_min = keep_min = 1.01: gain 0, harm 0), so the
    # veto always leaves a choice, and the chosen point never loses on the real training queries
    assert report["judged_gain"] >= 0.0 and report["judged_harm"] <= 0.05
    shipped = yaml.safe_load((model_dir / SERVING_NAME).read_text())
    assert shipped["gate"]["full_weight"] == 0.5 and shipped["merge"] == {"rewrite_operator": "and", "mode": "confident"}
    loaded = load_config(shipped=model_dir / SERVING_NAME)
    assert loaded.gate.full_min == report["best"]["full_min"] and loaded.merge.rewrite_operator == "and"
    assert report["merge_mode"] == loaded.merge.mode == "confident"  # measured as it is shipped


def test_evaluate_before_and_after_grpo(built_data, sft_dir, grpo_dir, opensearch_url, indexed_catalog, tmp_path):
    from qrw.trainer.evaluate import EvaluateConfig, run_evaluate

    config, _ = built_data
    report = run_evaluate(EvaluateConfig(models=[f"sft={sft_dir}", f"grpo={grpo_dir}"], data_dir=config.output_dir,
                                         output_dir=str(tmp_path), url=opensearch_url, index=indexed_catalog,
                                         num_rewrites=2, max_new_tokens=8, max_tag_examples=64))
    for name in ("sft", "grpo"):
        result = report["results"][name]
        assert 0.0 <= result["tag_accuracy"] <= 1.0 and 0.0 <= result["tag_macro_f1"] <= 1.0
        assert all(result[k] is None or 0.0 <= result[k] <= 1.0 for k in ("tag_auc_exact", "tag_auc_irrelevant"))
        assert 0.0 <= result["rewrite_relevance_rate"] <= 1.0 and result["tag_examples"] == 64
    table = (tmp_path / "eval_report.md").read_text()
    assert "| rewrite_relevance_rate |" in table and "sft" in table and "grpo" in table


def test_rank_auc_orders_pairs_and_counts_ties_half():
    from qrw.trainer.evaluate import rank_auc

    assert rank_auc([0.9, 0.8], [0.1, 0.2]) == 1.0 and rank_auc([0.1], [0.9, 0.8]) == 0.0
    assert rank_auc([0.5, 0.9], [0.5, 0.1]) == 0.875  # 3 wins and one tie of 4 pairs
    assert rank_auc([], [0.3]) is None
