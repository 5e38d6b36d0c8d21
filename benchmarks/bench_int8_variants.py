"""Benchmark: which int8 method, at what cost in tag agreement and speed (CPU).

From one fp32 ``qrw-export`` folder (``--fp32``; made with ``qrw-export --target cpu``), builds the
int8 graphs the export can make (blockwise ``MatMulNBits`` at block 32/64/128 and dynamic
``MatMulInteger``, through the same ``qrw.export.graph`` functions the export uses), then reports:

* tag argmax agreement with the fp32 graph on judged (query, product title) pairs (every
  ``--every``-th row of ``judgments.csv``), with the max and mean |P(tag) difference|;
* the fp32 graph's median margin between its two most probable tags (small margins flip easily);
* p50 latency, systems interleaved run by run: beam search (4 beams, 12 new tokens) for one query,
  and the prompt pass that tags 16 (query, title) prompts; ratios against fp32 from this one run.

    .venv/bin/python benchmarks/bench_int8_variants.py --fp32 DIR [--every 3] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime import judged_pairs, machine  # noqa: E402

VARIANTS = ("blockwise-32", "blockwise-64", "blockwise-128", "dynamic")


def build(variant: str, src: Path, dst: Path) -> None:
    from qrw.export.graph import quantize_int8, quantize_int8_blockwise

    if variant == "dynamic":
        quantize_int8(src, dst, keep_down_proj=True)
    else:
        quantize_int8_blockwise(src, dst, block_size=int(variant.split("-")[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="an fp32 qrw-export folder (target cpu)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--every", type=int, default=3, help="use every k-th judged pair")
    parser.add_argument("--runs", type=int, default=10, help="interleaved timing runs per system")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from qrw.plugin.prompt import rewrite_prompt, tag_prompt
    from qrw.plugin.runtime import GenerationConfig, ModelSpec, OnnxRewriteModel
    from qrw.plugin.runtime_manifest import read_manifest

    spec = ModelSpec.from_manifest(read_manifest(args.fp32))
    tokenizer = args.fp32 / "tokenizer.json"
    generation = GenerationConfig(strategy="beam", max_new_tokens=12)
    print("== machine ==")
    for key, value in machine().items():
        print(f"  {key}: {value}")
    print(f"  fp32 folder: {args.fp32}")

    def load(path: Path) -> OnnxRewriteModel:
        return OnnxRewriteModel.from_files(path, tokenizer, spec, threads=args.threads, generation=generation)

    pairs = judged_pairs()[:: args.every]
    prompts = [tag_prompt(q, title) for q, title in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        models = {"fp32": load(args.fp32 / "model.onnx")}
        for variant in args.variants.split(","):
            path = Path(tmp) / f"{variant}.onnx"
            build(variant, args.fp32 / "model.onnx", path)
            models[variant] = load(path)

        print(f"\n== tag agreement with the fp32 graph on {len(prompts)} judged pairs ==")
        reference = models["fp32"].tag_probs(prompts)
        ordered = np.sort(reference, axis=1)
        print(f"  fp32 median margin between its top two tags: {np.median(ordered[:, -1] - ordered[:, -2]):.3f}")
        for name, model in list(models.items())[1:]:
            probs = model.tag_probs(prompts)
            agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            diff = np.abs(probs - reference)
            print(f"  {name:14s} argmax agreement {agree:.2%}   max |p diff| {diff.max():.3f}   mean {diff.mean():.4f}")

        queries = ["laptop", "usb stick 64gb", "wireless mouse", "hp toner", "ssd 1tb", "monitor 27 inch", "canon ink", "dell docking station"]
        tag_batch = [tag_prompt(q, title) for q, title in pairs[:16]]
        beam = {name: [] for name in models}
        tagging = {name: [] for name in models}
        for run in range(args.runs):
            for name, model in models.items():
                started = time.perf_counter()
                model.generate_ids([rewrite_prompt(queries[run % len(queries)])], 4)
                beam[name].append(time.perf_counter() - started)
                started = time.perf_counter()
                model.tag_probs(tag_batch)
                tagging[name].append(time.perf_counter() - started)
        print(f"\n== p50 latency, {args.runs} interleaved runs, {args.threads} threads ==")
        base_beam, base_tag = statistics.median(beam["fp32"]), statistics.median(tagging["fp32"])
        for name in models:
            b, t = statistics.median(beam[name]), statistics.median(tagging[name])
            print(f"  {name:14s} beam-4 {b * 1e3:7.0f} ms (x fp32 {base_beam / b:4.2f})   tag 16 prompts {t * 1e3:7.0f} ms (x fp32 {base_tag / t:4.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
