"""Benchmark: one uncached query on the serving path, ONNX Runtime against PyTorch eager and against
today's path (main before issue 13), systems interleaved in one run; plus the quality of each variant
against the fp32 reference on judged queries and pairs.

Workloads (what one search request costs the rewriter):

* ``list`` (the serving path now): one greedy sequence listing up to 3 rewrites (prompt v2), stopped
  at EOS, a newline, the third separator or the manifest's token cap; then one tagging pass over
  those rewrites. ORT systems call ``rewrite_outputs`` (prefix KV reused for tagging); ``torch``
  runs transformers eager fp32: ``generate`` (greedy, the same stop rules as a StoppingCriteria)
  and one forward over the full tagging prompts (last position).
* ``today``: main before this issue: beam search (4 beams, 4 returned, <= 12 new tokens), the
  rewrites parsed from the beams, then a tagging pass over full prompts; the optimum graph with
  ORT's fusions, blockwise int8 (the README's "ORT int8 blockwise (default)" row).

Systems (``--systems``): ``torch`` (the reference), ``today``, ``qrw-fp32``, ``qrw-int8``,
``qrw-int4`` (the qrw graph: fused attention, packed projections; fp32, blockwise int8, blockwise
int4; one query is decoded with prompt-lookup drafts), ``qrw-fp32-plain`` (``qrw-fp32`` without the
export's shortlist head: the full fp32 LM head), any of them with the suffix ``-nolookup`` (one
token per pass), and ``optimum-int8`` (today's graph with the list workload, to separate graph from
workload).
Timing: single query p50/p95 over ``--runs`` interleaved rounds (A B C ... rotated each round; by
default every judged query twice: a query costs one pass when the model answers ``none`` and three or
more when it writes and tags a rewrite, so a p50 over a few dozen queries moves with which ones were
drawn), and batched throughput (``--batch-size`` queries per call, ``--batch-runs`` rounds); ratios
are of medians from this one run, plus the paired ratio: the median over rounds of torch's time over
the system's on the same query in the same round. The same ``--threads`` for every system. Each call
starts after ``--gap-ms`` (50) of idle: back to back, the previous system's thread pool is still
spinning (ORT's intra-op threads, torch's OpenMP threads) and takes the two cores from the next call;
on the default rewriter, back to back, qrw-fp32's p50 was 49.4 ms against 27.1-28.8 ms with the gap,
and torch's 137 ms against 88-96 ms (``docs/bench/bench_runtime_cpu_v2_shortlist*.json``). A search
service sees one query at a time with idle between them.

Quality (``--quality``), against ``torch`` fp32 on the list workload:

* rewrites: on every judged query, is the parsed rewrite list the same (and the first rewrite)?
* tags: on judged (query, product title) pairs (every ``--agreement-every``-th row of
  ``judgments.csv``), argmax agreement, max |P(tag) difference|, and gate agreement: the same
  decision (full / down / drop) under the default ``GateConfig``. ORT systems tag through
  ``model.tag`` (pairs grouped by query: the prefix-reusing path that serving uses).
  The issue's bar for serving a quantised variant: >= 98 % tag agreement and the same gate decisions.

Missing exports are made first (``qrw-export``, parity included) into ``--models-dir``; ``--model``
may be a LoRA adapter folder (merged once, cached there), a checkpoint folder or ``smollm2``.
``--targets`` passes the trainer's ``rewrite_train.jsonl`` to the exports (the token cap).

    .venv/bin/python benchmarks/bench_runtime.py --model models/default-rewriter --quality \
        --json docs/bench/bench_runtime_cpu.json
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
    "today": {"graph": "optimum", "int8": True},
    "optimum-int8": {"graph": "optimum", "int8": True},
    "qrw-fp32": {"graph": "qrw"},  # with the export's default shortlist head (the served default)
    "qrw-fp32-plain": {"graph": "qrw", "shortlist_head": 0},  # the plain fp32 LM head
    "qrw-int8": {"graph": "qrw", "int8": True},
    "qrw-int4": {"graph": "qrw", "int4": True, "parity": False},  # measured here instead: its export may fail parity
    "ort-cuda-fp16": {"target": "cuda", "fp16": True},
}
DEFAULT_SYSTEMS = {"cpu": "torch,today,qrw-fp32,qrw-int8,qrw-int4", "cuda": "torch,ort-cuda-fp16"}
NUM_REWRITES = 3
"""What the chain asks for by default (``ChainConfig.num_rewrites``)."""
TODAY_BEAMS, TODAY_NEW_TOKENS = 4, 12
NO_LOOKUP = "-nolookup"
"""System-name suffix: the same export, decoded one token per pass (no prompt-lookup drafts)."""


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


class TorchSystem:
    """transformers eager: the list workload with the same stop rules, tags from full prompts."""

    def __init__(self, checkpoint: Path, threads: int, manifest, cap: int, *, device: str = "cpu", dtype: str = "float32",
                 propose: bool = False) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria, StoppingCriteriaList

        torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.name = "torch" if device == "cpu" else f"torch-{device}"
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, dtype)).to(device).eval()
        self.tag_ids = list(manifest.tag_ids.values())
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        newline = torch.tensor(["\n" in t for t in texts] + [False] * max(0, self.model.config.vocab_size - len(texts)), device=device)
        seps = torch.tensor([t.count(";") for t in texts] + [0] * max(0, self.model.config.vocab_size - len(texts)), device=device)

        none_ids = self.tokenizer(" none", add_special_tokens=False).input_ids  # chain.propose: never 'none' first
        none_first = none_ids[0] if len(none_ids) == 1 else -1

        class ListStop(StoppingCriteria):  # the runtime's rules: newline, NUM_REWRITES separators, or 'none' first
            def __call__(self, input_ids, scores, **kwargs):
                generated = input_ids[:, self.start :]
                stop = newline[generated[:, -1]] | (seps[generated].sum(-1) >= NUM_REWRITES)
                return stop | ((generated[:, 0] == none_first) & (generated.shape[1] == 1))

        self.stop = ListStop()
        self.stopping = StoppingCriteriaList([self.stop])
        self.config = GenerationConfig(max_new_tokens=cap, num_beams=1, do_sample=False, eos_token_id=list(manifest.eos_token_ids),
                                       pad_token_id=manifest.pad_token_id,
                                       **({"begin_suppress_tokens": none_ids[:1]} if propose else {}))
        self.stop_ids = set(manifest.eos_token_ids) | {manifest.pad_token_id}
        self.tokens: list[float] = []

    def tag_probs(self, prompts: list[str]) -> np.ndarray:
        enc = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
        position_ids = (enc.attention_mask.cumsum(-1) - 1).masked_fill(enc.attention_mask == 0, 1)
        with self.torch.inference_mode():
            logits = self.model(**enc, position_ids=position_ids, logits_to_keep=1).logits[:, -1, self.tag_ids]
        return self.torch.softmax(logits.float(), -1).cpu().numpy()

    def rewrite(self, queries: list[str]) -> list[list[str]]:
        from qrw.plugin.prompt import parse_rewrites, rewrite_prompt

        enc = self.tokenizer([rewrite_prompt(q) for q in queries], padding=True, return_tensors="pt").to(self.device)
        self.stop.start = enc.input_ids.shape[1]
        with self.torch.inference_mode():
            out = self.model.generate(**enc, generation_config=self.config, stopping_criteria=self.stopping).cpu()
        generated = out[:, enc.input_ids.shape[1] :].tolist()
        lengths = [next((i for i, t in enumerate(row) if t in self.stop_ids), len(row)) for row in generated]
        self.tokens.append(sum(lengths) / len(lengths))
        texts = self.tokenizer.batch_decode([row[:n] for row, n in zip(generated, lengths)], skip_special_tokens=True)
        return [parse_rewrites(text, limit=NUM_REWRITES) for text in texts]

    def request(self, queries: list[str]) -> list[list[str]]:
        from qrw.plugin.prompt import tag_prompt

        rewrites = self.rewrite(queries)
        prompts = [tag_prompt(q, r) for q, rs in zip(queries, rewrites) for r in rs]
        if prompts:
            self.tag_probs(prompts)
        if self.device != "cpu":
            self.torch.cuda.synchronize()
        return rewrites


class OrtSystem:
    """The runtime on an exported folder: the list workload (``rewrite_outputs``) or today's (beam + tags)."""

    def __init__(self, name: str, folder: Path, threads: int, *, today: bool = False, lookahead: int = 4,
                 propose: bool = False) -> None:
        from qrw.plugin.runtime import GenerationConfig, load_model

        self.name = name
        self.today = today
        self.model = load_model(folder, threads=threads, generation=GenerationConfig(lookahead=lookahead, propose=propose))
        self.beam = GenerationConfig(strategy="beam", max_new_tokens=TODAY_NEW_TOKENS)
        self.tokens: list[float] = []

    def tag_probs(self, prompts: list[str]) -> np.ndarray:
        return self.model.tag_probs(prompts)

    def tag_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        from qrw.plugin.prompt import TAGS

        return np.array([[row[t.name] for t in TAGS] for row in self.model.tag(pairs)], dtype=np.float32)

    def rewrite(self, queries: list[str]) -> list[list[str]]:
        return [out.rewrites for out in self.model.rewrite_outputs(queries, NUM_REWRITES)]

    def request(self, queries: list[str]) -> list[list[str]]:
        if not self.today:
            outputs = self.model.rewrite_outputs(queries, NUM_REWRITES)
            self.tokens.append(sum(o.generated_tokens for o in outputs) / len(outputs))
            return [o.rewrites for o in outputs]
        from qrw.plugin.prompt import parse_rewrite, rewrite_prompt, tag_prompt

        ids = self.model.generate_ids([rewrite_prompt(q) for q in queries], TODAY_BEAMS, self.beam)
        self.tokens.append(sum(len(s) for per in ids for s in per) / max(1, sum(len(per) for per in ids)))
        rewrites, prompts = [], []
        for q, per in zip(queries, ids):
            seen: list[str] = []
            for seq in per:
                rewrite = parse_rewrite(self.model.tokenizer.decode(seq, skip_special_tokens=True))
                if rewrite and rewrite.lower() not in seen:
                    seen.append(rewrite.lower())
                    prompts.append(tag_prompt(q, rewrite))
            rewrites.append(seen)
        if prompts:
            self.model.tag_probs(prompts)
        return rewrites


def fingerprint(source: str) -> str:
    """A cheap identity of a checkpoint folder (names, sizes, mtimes of its files); "base" for a named model."""
    import hashlib

    folder = Path(source)
    if not folder.is_dir():
        return "base"
    digest = hashlib.sha1()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:10]


def ensure_exports(model: str, models_dir: Path, variants: list[str], targets: str | None) -> dict[str, Path]:
    from qrw.export.config import load_config
    from qrw.export.pipeline import run_export

    import dataclasses
    import hashlib

    folders = {}
    for name in variants:
        variant = "optimum-int8" if name == "today" else name
        config = load_config(None, {"model": model, "out": "-", "overwrite": True, "targets": targets, **VARIANTS[variant]})
        # keyed by every export setting, so a changed export default (or variant) gets a fresh export
        settings = json.dumps({k: v for k, v in dataclasses.asdict(config).items() if k != "out"}, sort_keys=True, default=str)
        folder = models_dir / f"{variant}-{hashlib.sha1(settings.encode()).hexdigest()[:8]}"
        if not (folder / "manifest.json").is_file():
            print(f"exporting {name} -> {folder}", flush=True)
            run_export(dataclasses.replace(config, out=str(folder)), progress=False)
        folders[name] = folder
    return folders


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def interleaved(systems: list, batches: list[list[str]], cpu: dict[str, list[float]] | None = None,
                gap: float = 0.0) -> dict[str, list[float]]:
    """Wall seconds per call (and, into ``cpu``, process CPU seconds), systems rotated each round so
    drift hits all alike. CPU time is the figure that survives a machine shared with other work.
    ``gap`` seconds of idle before each call: the thread pools of the system that ran before (ORT's
    intra-op threads, torch's OpenMP threads) spin for a while after a call and would otherwise take
    the 2 cores from the next system, so each call would also pay for its predecessor's idle wait."""
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    for run, batch in enumerate(batches):
        order = systems[run % len(systems) :] + systems[: run % len(systems)]
        for system in order:
            if gap:
                time.sleep(gap)
            started, started_cpu = time.perf_counter(), time.process_time()
            system.request(batch)
            times[system.name].append(time.perf_counter() - started)
            if cpu is not None:
                cpu.setdefault(system.name, []).append(time.process_time() - started_cpu)
        if (run + 1) % 10 == 0:
            print(f"  rounds: {run + 1}/{len(batches)}", file=sys.stderr, flush=True)
    return times


def quality(systems: list, queries: list[str], every: int) -> dict:
    """Rewrite-list, tag and gate agreement of every system with the first (torch fp32, list workload)."""
    from qrw.plugin import gate
    from qrw.plugin.config import GateConfig
    from qrw.plugin.prompt import TAGS, tag_prompt

    reference, others = systems[0], [s for s in systems[1:] if not getattr(s, "today", False) and not s.name.endswith(NO_LOOKUP)]
    print(f"\n== quality against {reference.name} (fp32, list workload) ==", flush=True)
    ref_rewrites = [r for i in range(0, len(queries), 8) for r in reference.rewrite(queries[i : i + 8])]
    pairs = judged_pairs()[::every]
    ref_probs = np.concatenate([reference.tag_probs([tag_prompt(q, t) for q, t in pairs[i : i + 32]]) for i in range(0, len(pairs), 32)])
    config = GateConfig()

    def actions(probs: np.ndarray) -> list[str]:
        return [gate.decide({t.name: float(p) for t, p in zip(TAGS, row)}, config).action for row in probs]

    ref_actions = actions(ref_probs)
    ordered = np.sort(ref_probs, axis=1)
    out = {"queries": len(queries), "pairs": len(pairs), "reference": reference.name,
           "reference_median_tag_margin": float(np.median(ordered[:, -1] - ordered[:, -2])),
           "reference_gate_actions": {a: ref_actions.count(a) for a in ("full", "down", "drop")},
           "reference_empty_lists": sum(1 for r in ref_rewrites if not r), "systems": {}}
    print(f"  {len(queries)} judged queries (rewrite lists), {len(pairs)} judged pairs (tags, gate); "
          f"reference gate actions {out['reference_gate_actions']}, median top-two tag margin {out['reference_median_tag_margin']:.3f}")
    print(f"  {'system':14s} {'same list':>10s} {'same 1st':>9s} {'tag argmax':>11s} {'max |dP|':>9s} {'same gate':>10s} {'gate flips':>10s}")
    for system in others:
        rewrites = [r for i in range(0, len(queries), 8) for r in system.rewrite(queries[i : i + 8])]
        probs = system.tag_pairs(pairs)
        same_list = float(np.mean([a == b for a, b in zip(rewrites, ref_rewrites)]))
        same_first = float(np.mean([(a[:1] == b[:1]) for a, b in zip(rewrites, ref_rewrites)]))
        argmax = float(np.mean(probs.argmax(1) == ref_probs.argmax(1)))
        diff = float(np.abs(probs - ref_probs).max())
        acts = actions(probs)
        flips = sum(a != b for a, b in zip(acts, ref_actions))
        row = {"same_rewrite_list": same_list, "same_first_rewrite": same_first, "tag_argmax_agreement": argmax,
               "max_tag_prob_diff": diff, "gate_agreement": 1 - flips / len(acts), "gate_flips": flips,
               "meets_98_and_same_gates": argmax >= 0.98 and flips == 0}
        out["systems"][system.name] = row
        print(f"  {system.name:14s} {same_list:10.1%} {same_first:9.1%} {argmax:11.2%} {diff:9.3f} {row['gate_agreement']:10.2%} {flips:10d}", flush=True)
    return out


def markdown(results: dict) -> str:
    """The README/docs table of one run's JSON (``--from-json FILE`` prints it without running)."""
    quality_rows = results.get("quality", {}).get("systems", {})
    lines = ["| system | workload | one query p50 / p95 (wall) | CPU p50 | × torch (p50) | × torch (paired) | × today (p50) | batch q/s "
             "| × today (batch) | tokens/seq | same list | tag agreement | gate flips |", "|---" * 13 + "|"]
    for name, row in results["systems"].items():
        q = quality_rows.get(name.removesuffix(NO_LOOKUP)) if not name.endswith(NO_LOOKUP) else None
        workload = "beam 4 × 12 + tags" if name == "today" else ("list, no drafts" if name.endswith(NO_LOOKUP) else "list")
        today_p50 = f"{row['speedup_vs_today_p50']:.2f}" if row.get("speedup_vs_today_p50") else "–"
        today_qps = f"{row['throughput_vs_today']:.2f}" if row.get("throughput_vs_today") else "–"
        paired = f"{row['speedup_vs_torch_paired_median']:.2f}" if row.get("speedup_vs_torch_paired_median") else "–"  # older runs lack it
        agreement = (f"{q['same_rewrite_list']:.1%} | {q['tag_argmax_agreement']:.2%} | {q['gate_flips']}" if q
                     else "(reference) | (reference) | –" if name == "torch" else "– | – | –")
        lines.append(f"| {name} | {workload} | {row['p50_ms']:,.0f} / {row['p95_ms']:,.0f} ms | {row.get('cpu_p50_ms', 0):,.0f} ms | "
                     f"{row['speedup_vs_torch_p50']:.2f} | {paired} | {today_p50} | "
                     f"{row['batch_qps']:.2f} | {today_qps} | "
                     f"{row['tokens_per_sequence'] or 0:.1f} | {agreement} |")
    return "\n".join(lines)


def shipped_propose(model: str) -> bool:
    """``chain.propose`` of the model folder's shipped serving.yaml (the defaults when it has none)."""
    from qrw.plugin.config import SERVING_NAME, load_config

    shipped = Path(model) / SERVING_NAME
    return load_config(shipped=shipped if shipped.is_file() else None).chain.propose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="LoRA adapter folder, checkpoint folder or 'smollm2' (PyTorch reference and export source)")
    parser.add_argument("--models-dir", type=Path, default=None, help="exports and merged adapters [default: $QRW_CACHE_DIR/bench/<model name>]")
    parser.add_argument("--systems", default=None, help=f"comma-separated [default cpu: {DEFAULT_SYSTEMS['cpu']}]")
    parser.add_argument("--targets", default=None, help="the trainer's rewrite_train.jsonl, for the exports' token cap")
    parser.add_argument("--runs", type=int, default=None, help="single-query rounds [default: every judged query twice]")
    parser.add_argument("--batch-runs", type=int, default=5, help="batched rounds")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="idle milliseconds before each timed call (lets the previous system's spinning threads stop; 0: back to back)")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per batched call")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every system")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="rewrite, tag and gate agreement with torch fp32 on judged queries/pairs")
    parser.add_argument("--agreement-every", type=int, default=3, help="use every k-th judged pair for tags (1 = all)")
    parser.add_argument("--propose", action=argparse.BooleanOptionalAction, default=None,
                        help="decode with chain.propose (the model's best rewrite even when it says none) [default: the model folder's serving.yaml]")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--from-json", type=Path, default=None, help="print the markdown table of an earlier run's JSON and exit")
    args = parser.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return 0

    import logging

    import onnxruntime

    from qrw.eval.judgments import load_judgments
    from qrw.plugin.runtime_manifest import read_manifest
    from qrw.search.catalog import default_data_dir
    from qrw.trainer.base_model import resolve_base_model

    logging.basicConfig(level=logging.WARNING)
    if args.device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        parser.error("--device cuda needs onnxruntime-gpu and a CUDA GPU (CUDAExecutionProvider is not available)")
    names = (args.systems or DEFAULT_SYSTEMS[args.device]).split(",")
    unknown = [n for n in names if n != "torch" and n.removesuffix(NO_LOOKUP) not in VARIANTS]
    if unknown or names[0] != "torch":
        parser.error(f"--systems: the first must be torch (the reference); unknown {unknown}; choose from {['torch', *VARIANTS]}")
    models_dir = (args.models_dir or Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "bench").expanduser()
    models_dir.mkdir(parents=True, exist_ok=True)
    source = merged_checkpoint(args.model, models_dir)
    exports_dir = models_dir / f"{Path(source).name}-{fingerprint(source)}"  # a retrained model gets fresh exports
    folders = ensure_exports(source, exports_dir, sorted({n.removesuffix(NO_LOOKUP) for n in names[1:]}), args.targets)
    manifests = {name: read_manifest(folder) for name, folder in folders.items()}
    cap = next((m.max_new_tokens for m in manifests.values() if m.max_new_tokens), 32)
    checkpoint = resolve_base_model(source)

    info = machine()
    print("== machine ==")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(f"  model: {args.model} ({checkpoint}); token cap {cap} ({next(iter(manifests.values())).max_new_tokens_source})")
    for name, manifest in manifests.items():
        print(f"  {name}: {manifest.precision}, opset {manifest.opset}, {', '.join(manifest.optimizations)}; fused {manifest.fused_ops}")
    if args.device == "cpu":
        print("  GPU: NOT RUN in this benchmark (run it with --device cuda on a GPU machine)")

    reference_manifest = next(iter(manifests.values()))
    propose = shipped_propose(args.model) if args.propose is None else args.propose
    print(f"  decoding: greedy list, chain.propose={propose} ({'flag' if args.propose is not None else 'the model folder serving.yaml'})")
    systems = [TorchSystem(checkpoint, args.threads, reference_manifest, cap, device=args.device, propose=propose)]
    systems += [OrtSystem(name, folders[name.removesuffix(NO_LOOKUP)], args.threads, today=name == "today",
                          lookahead=0 if name.endswith(NO_LOOKUP) else 4, propose=propose) for name in names[1:]]

    queries = sorted(load_judgments(default_data_dir() / "judgments" / "judgments.csv"))
    rng = random.Random(0)
    shuffled = queries[:]
    rng.shuffle(shuffled)
    for system in systems:
        for i in range(args.warmup):
            system.request([shuffled[i]])
        system.tokens.clear()

    load_before = os.getloadavg()
    single_cpu: dict[str, list[float]] = {}
    args.runs = args.runs or 2 * len(shuffled)
    single = interleaved(systems, [[shuffled[r % len(shuffled)]] for r in range(args.runs)], single_cpu, gap=args.gap_ms / 1e3)
    tokens = {s.name: float(np.mean(s.tokens)) if s.tokens else None for s in systems}
    batches = [[shuffled[(r * args.batch_size + k) % len(shuffled)] for k in range(args.batch_size)] for r in range(args.batch_runs)]
    batched = interleaved(systems, batches, gap=args.gap_ms / 1e3)

    load_after = os.getloadavg()
    results = {"machine": info, "load_average_before_after": [load_before, load_after], "model": args.model, "propose": propose, "token_cap": cap, "runs": args.runs, "batch_runs": args.batch_runs, "gap_ms": args.gap_ms,
               "batch_size": args.batch_size, "threads": args.threads, "num_rewrites": NUM_REWRITES, "systems": {}}
    base, today = systems[0].name, "today" if "today" in single else None
    base_p50 = statistics.median(single[base])
    base_qps = args.batch_size / statistics.median(batched[base])
    today_qps = args.batch_size / statistics.median(batched[today]) if today else None
    today_p50 = statistics.median(single[today]) if today else None
    print(f"\n== one uncached query: {args.runs} interleaved rounds, {args.threads} threads, {args.gap_ms:g} ms idle before each call; batched: {args.batch_size} queries per call, "
          f"median of {args.batch_runs} rounds ==")
    print(f"  load average (1, 5, 15 min) before {tuple(round(x, 1) for x in load_before)}, after {tuple(round(x, 1) for x in load_after)} "
          f"(2 cores: above 2 the machine is shared and wall times stretch)")
    print(f"  {'system':14s} {'p50 ms':>8s} {'p95 ms':>8s} {'cpu p50':>8s} {'x torch':>8s} {'paired':>7s} {'x today':>8s} {'batch q/s':>10s} {'x torch':>8s} {'x today':>8s} {'tokens/seq':>10s}")
    for system in systems:
        times = single[system.name]
        p50, p95 = statistics.median(times) * 1e3, percentile(times, 95) * 1e3
        qps = args.batch_size / statistics.median(batched[system.name])
        cpu_p50 = statistics.median(single_cpu[system.name]) * 1e3
        paired = statistics.median(b / t for b, t in zip(single[base], times))
        row = {"p50_ms": p50, "p95_ms": p95, "cpu_p50_ms": cpu_p50, "speedup_vs_torch_p50": base_p50 * 1e3 / p50,
               "speedup_vs_torch_paired_median": paired,
               "speedup_vs_today_p50": today_p50 * 1e3 / p50 if today_p50 else None,
               "batch_qps": qps, "throughput_vs_torch": qps / base_qps, "throughput_vs_today": qps / today_qps if today_qps else None,
               "tokens_per_sequence": tokens[system.name], "workload": "today (beam 4 x 12 + tags)" if system.name == "today" else "list (greedy + prefix-reusing tags)"}
        results["systems"][system.name] = row
        vs_today = f"{row['speedup_vs_today_p50']:7.2f}x" if today_p50 else "     -  "
        tput_today = f"{row['throughput_vs_today']:7.2f}x" if today_qps else "     -  "
        print(f"  {system.name:14s} {p50:8.1f} {p95:8.1f} {cpu_p50:8.1f} {row['speedup_vs_torch_p50']:7.2f}x {paired:6.2f}x {vs_today} {qps:10.2f} "
              f"{row['throughput_vs_torch']:7.2f}x {tput_today} {row['tokens_per_sequence'] or 0:10.1f}", flush=True)
    print("  targets (issue 13, 2-core CPU, the trained default): p50 <= 120 ms (stretch 60), p95 <= 200 ms; ONNX >= 3x torch; "
          "batched >= 3x today")

    if args.quality:
        results["quality"] = quality(systems, queries, args.agreement_every)
    print("\n" + markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
