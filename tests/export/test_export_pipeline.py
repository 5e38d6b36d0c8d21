"""qrw-export on the tiny model: export, fusions, precision variants, parity, manifest, config, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest

from qrw.errors import ConfigError
from qrw.export.cli import main
from qrw.export.config import ExportConfig, load_config
from qrw.plugin.prompt import PROMPT_VERSION, TAGS
from qrw.plugin.runtime_manifest import file_sha256, model_files, read_manifest


def test_fp32_export_passes_parity_and_writes_a_full_manifest(tiny_export: Path, tiny_checkpoint: Path):
    manifest = read_manifest(tiny_export, verify_hash=True)
    assert manifest.prompt_version == PROMPT_VERSION
    assert manifest.target == "cpu" and manifest.precision == "fp32" and manifest.opset == 23  # the qrw graph
    assert manifest.ort_version == onnxruntime.__version__
    assert [(t.name, t.token) for t in manifest.tags] == [(t.name, t.token) for t in TAGS]
    assert len({t.id for t in manifest.tags}) == 4
    assert manifest.model_hash == file_sha256(model_files(tiny_export))
    assert manifest.logits == "last" and "last-position-logits" in manifest.optimizations
    assert manifest.fused_ops.get("SkipSimplifiedLayerNormalization", 0) > 0  # fused norms
    assert manifest.fused_ops.get("Attention") == 2 and "fused-attention" in manifest.optimizations  # one per layer
    assert manifest.max_new_tokens == 24 and manifest.max_new_tokens_source.startswith("default")
    parity = manifest.parity
    assert parity["run"] and parity["passed"], parity
    assert parity["greedy_agreement"] == 1.0
    assert parity["tag_agreement"] == 1.0
    assert parity["tokenization_agreement"] == 1.0
    assert parity["max_logit_diff"] < 1e-3
    assert manifest.num_layers == 2 and manifest.num_kv_heads == 2 and manifest.head_dim == 16
    assert {"model.onnx", "tokenizer.json", "manifest.json"} <= {p.name for p in tiny_export.iterdir()}
    assert not tiny_export.with_name(tiny_export.name + ".partial").exists()


@pytest.mark.parametrize(
    ("flags", "op", "count", "optimization"),
    [
        ([], "MatMulNBits", 9, "int8-blockwise-32-matmulnbits"),  # qkv, o, gate_up, down x 2 layers + LM head
        (["--int8-method", "dynamic"], "MatMulInteger", 7, "int8-dynamic-per-channel-matmul-except-down-proj"),  # down_proj kept fp32
    ],
)
def test_int8_cpu_export_quantises_and_passes_its_tolerances(tiny_checkpoint: Path, tmp_path: Path, flags, op, count, optimization):
    out = tmp_path / "int8"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--int8", *flags, "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.precision == "int8"
    assert manifest.fused_ops.get(op, 0) >= count
    assert optimization in manifest.optimizations
    assert manifest.parity["passed"]
    assert manifest.parity["tolerances"]["max_logit_diff"] is None  # reported, not enforced for int8


def test_int4_cpu_export_quantises_every_matmul_to_four_bits(tiny_checkpoint: Path, tmp_path: Path):
    import onnx

    out = tmp_path / "int4"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--int4", "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.precision == "int4" and "int4-blockwise-32-matmulnbits" in manifest.optimizations
    graph = onnx.load(str(out / "model.onnx")).graph
    quantised = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(quantised) == 9 and not [n for n in graph.node if n.op_type == "MatMul"]
    assert all(a.i == 4 for n in quantised for a in n.attribute if a.name == "bits")
    assert manifest.parity["passed"]


def test_shortlist_head_scores_exactly_what_the_runtime_reads(tiny_checkpoint: Path, tiny_export: Path, tmp_path: Path):
    """A 4-bit copy of the LM head picks 128 of the 1,024 tokens; they and the tags are scored in fp32.
    Greedy text, the in-graph top 16 and tag probabilities must be the plain fp32 head's, while the
    logits outside the shortlist are the coarse head's (so the graph is not plain fp32 in disguise)."""
    import numpy as np
    import onnx

    from qrw.plugin.prompt import rewrite_prompt, tag_prompt
    from qrw.plugin.runtime import GenerationConfig, load_model

    out = tmp_path / "shortlist"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--shortlist-head", "128", "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.precision == "fp32" and "shortlist-128" in manifest.optimizations and "shortlist-head-int4" in manifest.optimizations
    assert manifest.parity["passed"] and manifest.parity["greedy_agreement"] == 1.0 and manifest.parity["max_logit_diff"] < 1e-3
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [n.name for n in graph.node if n.op_type == "MatMulNBits"] == ["lm_head_coarse_Q4"]  # every other weight stays fp32
    assert "shortlist" not in " ".join(read_manifest(tiny_export).optimizations)  # the default (1,024) is not below this vocabulary

    plain, short = load_model(tiny_export, warmup=False), load_model(out, warmup=False)
    queries = ["laptop", "usb c cable 2m", "hp toner 305a", "samsung galaxy s21 case", "wireless mouse", "27 inch monitor"]
    greedy = GenerationConfig(strategy="greedy", max_new_tokens=12)
    prompts = [rewrite_prompt(q) for q in queries]
    assert short.generate_ids(prompts, 1, greedy) == plain.generate_ids(prompts, 1, greedy)
    pairs = [tag_prompt(q, r) for q in queries for r in ("notebook", q)]
    np.testing.assert_allclose(short.tag_probs(pairs), plain.tag_probs(pairs), atol=1e-5)
    ids, mask, pos = plain._pad(plain._encode(prompts))
    (top_plain, logits_plain), _ = plain._run(("top_ids", "logits"), ids, mask, pos, plain._empty_past(len(ids)))
    (top_short, logits_short), _ = short._run(("top_ids", "logits"), ids, mask, pos, short._empty_past(len(ids)))
    assert (top_short == top_plain).all()
    np.testing.assert_allclose(np.take_along_axis(logits_short, top_plain, 1), np.take_along_axis(logits_plain, top_plain, 1), atol=1e-4)
    assert np.abs(logits_short - logits_plain).max() > 1e-3  # outside the shortlist: the 4-bit head's scores


def test_optimum_graph_is_still_available_and_passes_parity(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "optimum"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--graph", "optimum", "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.opset == 18 and "qrw-graph" not in manifest.optimizations and "Attention" not in manifest.fused_ops
    assert manifest.parity["passed"] and manifest.parity["greedy_agreement"] == 1.0 and manifest.parity["max_logit_diff"] < 1e-3


def test_token_cap_comes_from_the_flag_or_the_training_targets(tiny_checkpoint: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    from qrw.plugin.prompt import rewrite_completion

    completions = [rewrite_completion(["hp 305a toner", "hp toner cartridge"])] * 98 + [rewrite_completion(["usb stick"])] * 2
    targets = tmp_path / "rewrite_train.jsonl"
    targets.write_text("".join(json.dumps({"prompt": "p", "completion": c}) + "\n" for c in completions))
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    longest = len(tokenizer.encode(completions[0], add_special_tokens=False))
    out = tmp_path / "capped"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--targets", str(targets), "--no-parity", "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.max_new_tokens == longest + 1 and "rewrite_train.jsonl" in manifest.max_new_tokens_source
    out = tmp_path / "flag"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--max-new-tokens", "7", "--no-parity", "--quiet"]) == 0
    assert read_manifest(out).max_new_tokens == 7
    assert main(["--model", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--targets", str(tmp_path / "none.jsonl"), "--quiet"]) == 2


def test_cuda_fp16_export_path_builds_and_is_marked_as_validated_on_cpu(tiny_checkpoint: Path, tmp_path: Path):
    """The CUDA/fp16 graph is built and checked here on CPU; running it on a GPU is NOT tested here."""
    out = tmp_path / "fp16"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--target", "cuda", "--fp16", "--quiet"]) == 0
    manifest = read_manifest(out)
    assert (manifest.target, manifest.precision) == ("cuda", "fp16")
    assert manifest.parity["passed"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "validated on CPU" in manifest.parity["note"]


def test_lora_adapter_is_merged_before_export(tiny_checkpoint: Path, tmp_path: Path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():  # make the adapter change the outputs, so a missed merge would fail parity
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_checkpoint)
    out = tmp_path / "merged"
    assert main(["--model", str(adapter), "--out", str(out), "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest.base_model == str(tiny_checkpoint)
    assert manifest.parity["passed"] and manifest.parity["greedy_agreement"] == 1.0


def test_failed_parity_fails_the_export_with_a_clear_message(tiny_checkpoint: Path, tmp_path: Path, capsys):
    config = tmp_path / "strict.yaml"
    config.write_text("export:\n  max_logit_diff: 1.0e-12\n")
    out = tmp_path / "strict"
    assert main(["--model", str(tiny_checkpoint), "--out", str(out), "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "parity check failed" in err and "max |logit diff|" in err
    assert not out.exists()  # only OUT.partial is left, for inspection
    assert out.with_name("strict.partial").is_dir()


def test_existing_output_folder_is_not_overwritten_silently(tiny_export: Path, capsys):
    assert main(["--model", "whatever", "--out", str(tiny_export), "--quiet", "--no-parity"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_config_defaults_yaml_and_flags(tmp_path: Path):
    assert ExportConfig().precision == "fp32" and ExportConfig().opset == 18
    assert ExportConfig(int8=True).min_tag_agreement == 0.85
    config = tmp_path / "c.yaml"
    config.write_text("opset: 17\ntarget: cpu\nint8: true\n")
    cfg = load_config(config, {"opset": 18, "target": None})
    assert (cfg.opset, cfg.target, cfg.precision) == (18, "cpu", "int8")
    config.write_text("opsett: 17\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(config)
    with pytest.raises(ConfigError, match="needs --target cuda"):
        ExportConfig(fp16=True)
    with pytest.raises(ConfigError, match="needs --target cpu"):
        ExportConfig(target="cuda", int8=True)
    with pytest.raises(ConfigError, match="int8_method"):
        ExportConfig(int8=True, int8_method="static")
    with pytest.raises(ConfigError, match="exclude each other"):
        ExportConfig(int8=True, int4=True)
    with pytest.raises(ConfigError, match="graph"):
        ExportConfig(graph="tvm")
    assert ExportConfig(int4=True).precision == "int4" and ExportConfig(int4=True).min_tag_agreement == 0.85


def test_cli_help_and_missing_model(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "qrw.export.cli", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--model", "--out", "--target", "--fp16", "--int8", "--int4", "--graph", "--max-new-tokens", "--targets", "--opset", "--config"):
        assert flag in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "qrw.export.cli", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Error: model not found" in result.stderr
