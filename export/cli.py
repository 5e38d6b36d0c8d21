"""``qrw-export``: flags (and an optional ``--config`` YAML) become an ``ExportConfig``, then one call.

Examples::

    qrw-export --model runs/sft/checkpoint --out models/rewriter-int8 --target cpu --int8
    qrw-export --model runs/sft/checkpoint --out models/rewriter-int4 --target cpu --int4
    qrw-export --model runs/grpo/adapter --out models/rewriter-fp16 --target cuda --fp16
    qrw-export --config export.yaml --out models/x      # flags override the file

Heavy imports (torch, optimum, onnxruntime) happen inside ``main``'s call, so ``--help`` is instant.
Expected failures (bad flags, a missing checkpoint, a failed parity check) print one ``Error:`` line
and exit with code 2.
"""

from __future__ import annotations

import json
import logging
import sys

import click



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", help="Checkpoint folder, peft adapter folder (adapter_config.json), or 'smollm2'.")
@click.option("--out", help="Output folder (model.onnx, tokenizer.json, manifest.json).")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default=None, help="Execution provider the graph is built for [default: cpu].")
@click.option("--fp16", is_flag=True, default=None, help="float16 weights and KV cache (needs --target cuda).")
@click.option("--int8", is_flag=True, default=None, help="int8 quantisation of MatMul weights (needs --target cpu).")
@click.option("--int8-method", type=click.Choice(["blockwise", "dynamic"]), default=None, help="blockwise (MatMulNBits, 8-bit blocks of 32: tags closest to fp32) or dynamic (MatMulInteger: faster prompt pass) [default: blockwise].")
@click.option("--int4", is_flag=True, default=None, help="4-bit blockwise weights (MatMulNBits, blocks of 32; needs --target cpu).")
@click.option("--graph", type=click.Choice(["auto", "qrw", "optimum"]), default=None, help="qrw: build the decoder directly (attention fused); optimum: optimum export + ORT fusions; auto: qrw on cpu for llama/qwen2/mistral [default: auto].")
@click.option("--shortlist-head", type=int, default=None, help="qrw graph, target cpu: a 4-bit LM head shortlists this many tokens, scored exactly in fp32 with the tag tokens; 0: plain fp32 head [default: 1024].")
@click.option("--max-new-tokens", type=int, default=None, help="Token cap of one generated rewrite list [default: from the training targets, else 24].")
@click.option("--targets", default=None, help="The trainer's rewrite_train.jsonl, for the token cap [default: found via training_card.json].")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 18].")
@click.option("--base-model", default=None, help="Base model of an adapter (default: from adapter_config.json).")
@click.option("--optimize/--no-optimize", default=None, help="ONNX Runtime transformer fusions [default: on].")
@click.option("--parity/--no-parity", default=None, help="Validate against PyTorch; fails past the tolerances [default: on].")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output folder.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="YAML file with ExportConfig fields (flat or under 'export:').")
@click.option("--quiet", is_flag=True, help="No progress bar or step log; only the final JSON.")
def export_command(config_file, quiet, **flags) -> None:
    """Export a rewrite model to ONNX for the qrw runtime, optimise, validate, write a manifest."""
    from qrw.export.config import load_config

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = load_config(config_file, flags)
    from qrw.export.pipeline import run_export

    manifest = run_export(cfg, progress=not quiet)
    summary = {
        "out": str(cfg.out),
        "target": manifest.target,
        "precision": manifest.precision,
        "model_hash": manifest.model_hash,
        "optimizations": list(manifest.optimizations),
        "max_new_tokens": manifest.max_new_tokens,
        "fused_ops": manifest.fused_ops,
        "parity": manifest.parity,
    }
    click.echo(json.dumps(summary, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qrw-export`` (errors handled as for ``qrw``)."""
    from qrw.cli import run_command

    return run_command(export_command, argv, "qrw-export")

if __name__ == "__main__":
    sys.exit(main())
