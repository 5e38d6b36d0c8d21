"""Benchmark: the serving runtime (ONNX Runtime) against PyTorch eager on the same model and prompts.

Workload (what one search request costs the rewriter):

* single query: 4 rewrites of at most 12 new tokens (beam search, 4 beams, 4 returned) for one
  query, then the tagging pass over those 4 (query, rewrite) pairs; p50/p95 latency.
* batched: ``--batch-size`` queries in one call (4 rewrites each, then tagging all pairs);
  throughput in queries per second.

Systems, ``--device cpu`` (default): ``torch`` (transformers eager fp32 ``generate`` + one forward
for tags, logits of the last position only), ``ort-fp32`` (plain export), ``ort-fp32-opt`` (fused
graph), ``ort-int8`` (fused + blockwise int8, the default) and ``ort-int8-dynamic`` (fused + dynamic
int8), CPU. ``--device cuda`` (needs a GPU, torch with CUDA and
onnxruntime-gpu): ``torch-cuda-fp32`` and ``torch-cuda-fp16`` (eager on the GPU) against
``ort-cuda-fp32`` and ``ort-cuda-fp16`` (CUDA execution provider, IO binding); the ratio column is
against ``torch-cuda-fp32``. Without a GPU the CPU run says that fp16/CUDA was NOT run. Systems are
interleaved run by run (A B C D A B C D ...), so drift in machine speed hits all of them alike;
ratios are of medians from this one run. Thread count is the same for every system (``--threads``).

``--model`` may be a peft LoRA adapter folder (``models/default-rewriter``): it is merged into its
base once (cached in ``--models-dir``) and the merged checkpoint is both the PyTorch reference and
the export source.

``--agreement`` also tags judged pairs (``tag_prompt(query, product title)`` for every row of
``judgments.csv`` joined to the catalog) with PyTorch fp32 and with each ONNX variant, and reports
how often the most probable tag agrees.

Missing model folders are exported first (``qrw-export``, parity included) into ``--models-dir``.

    .venv/bin/python benchmarks/bench_runtime.py --model smollm2 --models-dir ~/.cache/qrw/bench --agreement
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {  # name -> ExportConfig overrides
    "ort-fp32": {"optimize": False},
    "ort-fp32-opt": {},
    "ort-int8": {"int8": True},  # blockwise (MatMulNBits), the default int8 method
    "ort-int8-dynamic": {"int8": True, "int8_method": "dynamic"},
    "ort-cuda-fp32": {"target": "cuda"},
    "ort-cuda-fp16": {"target": "cuda", "fp16": True},
}
DEVICE_VARIANTS = {"cpu": ["ort-fp32", "ort-fp32-opt", "ort-int8", "ort-int8-dynamic"], "cuda": ["ort-cuda-fp32", "ort-cuda-fp16"]}
NUM_REWRITES = 4
MAX_NEW_TOKENS = 12


def machine() -> dict:
    import importlib.metadata as md

    import onnxruntime

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
    }
    for package in ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "tokenizers", "numpy"):
        try:
            info[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return info


def judged_pairs() -> list[tuple[str, str]]:
    from qrw.search.catalog import default_data_dir, load_catalog

    data_dir = default_data_dir()
    titles = {p.id: p.title for p in load_catalog(data_dir)}
    pairs = []
    with open(data_dir / "judgments" / "judgments.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["docid"] in titles:
                pairs.append((row["query"], titles[row["docid"]]))
    return pairs


class TorchSystem:
    """PyTorch eager (fp32 on CPU; fp32 or fp16 on CUDA): the same work as the runtime, through transformers."""

    def __init__(self, checkpoint: Path, threads: int, tag_ids, eos_ids, pad_id, *, device: str = "cpu", dtype: str = "float32") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.name = "torch" if device == "cpu" else f"torch-{device}-{'fp16' if dtype == 'float16' else 'fp32'}"
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, dtype)).to(device).eval()
        self.tag_ids = list(tag_ids)
        self.config = GenerationConfig(
            max_new_tokens=MAX_NEW_TOKENS, num_beams=NUM_REWRITES, num_return_sequences=NUM_REWRITES,
            do_sample=False, eos_token_id=list(eos_ids), pad_token_id=pad_id,
        )
        self.tokens = []

    def tag_probs(self, prompts: list[str]) -> np.ndarray:
        enc = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
        position_ids = (enc.attention_mask.cumsum(-1) - 1).masked_fill(enc.attention_mask == 0, 1)
        with self.torch.inference_mode():
            logits = self.model(**enc, position_ids=position_ids, logits_to_keep=1).logits[:, -1, self.tag_ids]
        return self.torch.softmax(logits.float(), -1).cpu().numpy()

    def request(self, queries: list[str]) -> None:
        from qrw.plugin.prompt import parse_rewrite, rewrite_prompt, tag_prompt

        enc = self.tokenizer([rewrite_prompt(q) for q in queries], padding=True, return_tensors="pt").to(self.device)
        with self.torch.inference_mode():
            out = self.model.generate(**enc, generation_config=self.config).cpu()
        texts = self.tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
        stop = set(self.config.eos_token_id) | {self.config.pad_token_id}
        lengths = [next((i for i, t in enumerate(row) if t in stop), len(row)) for row in out[:, enc.input_ids.shape[1] :].tolist()]
        self.tokens.append(sum(lengths) / len(lengths))  # generated tokens per rewrite, EOS excluded
        pairs = []
        for i, q in enumerate(queries):
            seen = []
            for text in texts[i * NUM_REWRITES : (i + 1) * NUM_REWRITES]:
                rewrite = parse_rewrite(text)
                if rewrite and rewrite.lower() not in seen:
                    seen.append(rewrite.lower())
                    pairs.append(tag_prompt(q, rewrite))
        if pairs:
            self.tag_probs(pairs)
        if self.device != "cpu":
            self.torch.cuda.synchronize()


class OrtSystem:
    def __init__(self, name: str, folder: Path, threads: int) -> None:
        from qrw.plugin.runtime import GenerationConfig, load_model

        self.name = name
        self.model = load_model(folder, threads=threads, generation=GenerationConfig(strategy="beam", max_new_tokens=MAX_NEW_TOKENS))
        self.tokens = []

    def tag_probs(self, prompts: list[str]) -> np.ndarray:
        return self.model.tag_probs(prompts)

    def request(self, queries: list[str]) -> None:
        from qrw.plugin.prompt import parse_rewrite, rewrite_prompt

        ids = self.model.generate_ids([rewrite_prompt(q) for q in queries], NUM_REWRITES)
        self.tokens.append(sum(len(s) for per in ids for s in per) / max(1, sum(len(per) for per in ids)))
        texts = [[self.model.tokenizer.decode(s, skip_special_tokens=True) for s in per] for per in ids]
        pairs = []
        for q, per in zip(queries, texts):
            seen = []
            for text in per:
                rewrite = parse_rewrite(text)
                if rewrite and rewrite.lower() not in seen:
                    seen.append(rewrite.lower())
                    pairs.append((q, rewrite))
        if pairs:
            self.model.tag(pairs)


def merged_checkpoint(model: str, models_dir: Path) -> str:
    """A LoRA adapter folder merged into its base once (cached); anything else unchanged."""
    from qrw.export.graph import is_adapter, merge_adapter
    from qrw.plugin.runtime_manifest import file_sha256

    source = Path(model).expanduser()
    if not (source.is_dir() and is_adapter(source)):
        return model
    weights = sorted(source.glob("adapter_model.*"))
    merged = models_dir / f"merged-{source.name}-{file_sha256(weights)[:12]}"
    if not (merged / "config.json").is_file():
        print(f"merging adapter {source} -> {merged}", flush=True)
        merge_adapter(source, merged)
    return str(merged)


def ensure_exports(model: str, models_dir: Path, variants: list[str]) -> dict[str, Path]:
    from qrw.export.config import load_config
    from qrw.export.pipeline import run_export

    folders = {}
    for name in variants:
        folder = models_dir / name
        if not (folder / "manifest.json").is_file():
            print(f"exporting {name} -> {folder}", flush=True)
            run_export(load_config(None, {"model": model, "out": str(folder), "overwrite": True, **VARIANTS[name]}), progress=False)
        folders[name] = folder
    return folders


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="checkpoint folder or 'smollm2' (PyTorch reference and export source)")
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "bench")
    parser.add_argument("--runs", type=int, default=30, help="single-query runs per system")
    parser.add_argument("--batch-runs", type=int, default=5, help="batched runs per system")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per batched call")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every system")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu: torch vs ORT fp32/int8; cuda: torch vs ORT on the GPU (fp32, fp16)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--agreement", action="store_true", help="tag agreement with PyTorch fp32 on judged pairs")
    parser.add_argument("--agreement-every", type=int, default=1, help="use every k-th judged pair (1 = all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import logging

    import onnxruntime

    from qrw.plugin.prompt import tag_prompt
    from qrw.plugin.runtime_manifest import read_manifest
    from qrw.trainer.base_model import resolve_base_model

    logging.basicConfig(level=logging.WARNING)
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if args.device == "cuda" and not has_cuda:
        parser.error("--device cuda needs onnxruntime-gpu and a CUDA GPU (CUDAExecutionProvider is not available)")
    variants = DEVICE_VARIANTS[args.device]
    models_dir = args.models_dir.expanduser()
    models_dir.mkdir(parents=True, exist_ok=True)
    source = merged_checkpoint(args.model, models_dir)
    folders = ensure_exports(source, models_dir, variants)
    manifest = read_manifest(folders[variants[0]])
    checkpoint = resolve_base_model(source)

    info = machine()
    print("== machine ==")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(f"  model: {args.model} ({checkpoint}), base_model in manifest: {manifest.base_model}")
    if args.device == "cpu":
        print("  ort-cuda-fp16 (CUDA): NOT RUN in this benchmark - run it with --device cuda on a GPU machine")
    else:
        import torch

        print(f"  gpu: {torch.cuda.get_device_name(0)}, torch cuda {torch.version.cuda}")

    ids = (manifest.tag_ids.values(), manifest.eos_token_ids, manifest.pad_token_id)
    if args.device == "cpu":
        systems = [TorchSystem(checkpoint, args.threads, *ids)]
    else:
        systems = [TorchSystem(checkpoint, args.threads, *ids, device="cuda", dtype=d) for d in ("float32", "float16")]
    systems += [OrtSystem(name, folders[name], args.threads) for name in variants]

    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir

    queries = sorted(load_judgments(default_data_dir() / "judgments" / "judgments.csv"))
    rng = random.Random(0)
    rng.shuffle(queries)

    for system in systems:
        for i in range(args.warmup):
            system.request([queries[i]])
        system.tokens.clear()

    single: dict[str, list[float]] = {s.name: [] for s in systems}
    for run in range(args.runs):
        order = systems[run % len(systems) :] + systems[: run % len(systems)]  # rotate who goes first
        for system in order:
            started = time.perf_counter()
            system.request([queries[run % len(queries)]])
            single[system.name].append(time.perf_counter() - started)
        if (run + 1) % 10 == 0:
            print(f"  single-query runs: {run + 1}/{args.runs}", file=sys.stderr, flush=True)
    batched: dict[str, list[float]] = {s.name: [] for s in systems}
    for run in range(args.batch_runs):
        batch = [queries[(run * args.batch_size + k) % len(queries)] for k in range(args.batch_size)]
        order = systems[run % len(systems) :] + systems[: run % len(systems)]
        for system in order:
            started = time.perf_counter()
            system.request(batch)
            batched[system.name].append(time.perf_counter() - started)

    results = {"machine": info, "runs": args.runs, "batch_runs": args.batch_runs, "batch_size": args.batch_size, "threads": args.threads, "systems": {}}
    base = systems[0].name
    base_p50 = statistics.median(single[base])
    base_qps = args.batch_size / statistics.median(batched[base])
    print(f"\n== one query: {NUM_REWRITES} rewrites (beam {NUM_REWRITES}) of <= {MAX_NEW_TOKENS} new tokens + tagging them; {args.runs} interleaved runs each, {args.threads} threads ==")
    print(f"  {'system':16s} {'p50 ms':>8s} {'p95 ms':>8s} {'speed-up (p50)':>15s} {'batch q/s':>10s} {'x ' + base:>16s} {'tokens/rewrite':>15s}")
    for system in systems:
        p50, p95 = statistics.median(single[system.name]) * 1e3, percentile(single[system.name], 95) * 1e3
        qps = args.batch_size / statistics.median(batched[system.name])
        row = {
            "p50_ms": p50, "p95_ms": p95, "speedup_p50": base_p50 * 1e3 / p50,
            "batch_median_s": statistics.median(batched[system.name]), "batch_qps": qps, "throughput_ratio": qps / base_qps,
            "mean_tokens_per_rewrite": float(np.mean(system.tokens)) if system.tokens else None,
        }
        results["systems"][system.name] = row
        print(f"  {system.name:16s} {p50:8.1f} {p95:8.1f} {row['speedup_p50']:14.2f}x {qps:10.2f} {row['throughput_ratio']:15.2f}x {row['mean_tokens_per_rewrite'] or 0:15.1f}")
    print(f"  (batched: {args.batch_size} queries per call, median of {args.batch_runs} interleaved runs)")

    if args.agreement:
        pairs = judged_pairs()[:: args.agreement_every]
        prompts = [tag_prompt(q, title) for q, title in pairs]
        print(f"\n== tag agreement with {systems[0].name} on {len(prompts)} judged (query, product title) pairs ==")
        reference = np.concatenate([systems[0].tag_probs(prompts[i : i + 32]) for i in range(0, len(prompts), 32)])
        results["agreement"] = {"pairs": len(prompts)}
        argmax = {}
        for system in systems[1:]:
            if system.name == "ort-fp32":
                continue  # same graph as ort-fp32-opt up to fusions (parity ~1e-4); saves minutes
            probs = system.tag_probs(prompts)
            argmax[system.name] = probs.argmax(1)
            agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            diff = float(np.abs(probs - reference).max())
            results["agreement"][system.name] = {"argmax_agreement": agree, "max_prob_diff": diff}
            print(f"  {system.name:16s} argmax agreement {agree:.2%}   max |p diff| {diff:.3f}")
        for name in ("ort-int8", "ort-int8-dynamic"):
            if name in argmax and "ort-fp32-opt" in argmax:
                vs_ort = float(np.mean(argmax[name] == argmax["ort-fp32-opt"]))
                results["agreement"][f"{name}_vs_ort_fp32_opt"] = vs_ort
                print(f"  {name} vs ort-fp32-opt argmax agreement {vs_ort:.2%}")
        counts = np.bincount(reference.argmax(1), minlength=4).tolist()
        print(f"  (reference argmax tag counts in TAGS order exact/substitute/weak/irrelevant: {counts})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
