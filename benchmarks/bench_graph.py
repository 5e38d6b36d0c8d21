"""Benchmark: two exported graphs, run alone at the shapes decoding uses (ORT sessions, no runtime).

Why: ``bench_runtime.py`` times whole requests, where the graph and the decoding workload both
change; this isolates the graph (for example ``optimum-int8`` against ``qrw-int8``). Shapes
(batch, new tokens, past tokens): a decode step of one query (1, 1, 24), a batched decode step
(16, 1, 30), a batched prompt pass (16, 16, 0) and a tagging pass of 32 rows behind a 16-token
prefix (32, 12, 16). Inputs are constant token ids and zero KV caches (timing only). Graphs are
interleaved round by round; medians of wall and process CPU time.

    .venv/bin/python benchmarks/bench_graph.py DIR_A/model.onnx DIR_B/model.onnx [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SHAPES = ((1, 1, 24), (16, 1, 30), (16, 16, 0), (32, 12, 16))


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="+")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    def session(path: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def feeds(sess, batch: int, new: int, past: int) -> dict:
        inputs = {i.name: i for i in sess.get_inputs()}
        kv = [n for n in inputs if n.startswith("past")]
        shape = inputs[kv[0]].shape
        dtype = np.float16 if inputs[kv[0]].type == "tensor(float16)" else np.float32
        out = {"input_ids": np.full((batch, new), 28, np.int64), "attention_mask": np.ones((batch, new + past), np.int64),
               "position_ids": np.arange(past, past + new)[None].repeat(batch, 0)}
        if "num_logits" in inputs:
            out["num_logits"] = np.array([1], np.int64)
        out.update({n: np.zeros((batch, shape[1], past, shape[3]), dtype) for n in kv})
        return out

    sessions = [session(p) for p in args.graphs]
    print(f"graphs: {args.graphs}; {args.rounds} interleaved rounds, {args.threads} threads; medians (wall / process CPU)")
    for batch, new, past in SHAPES:
        inputs = [feeds(s, batch, new, past) for s in sessions]
        wall: list[list[float]] = [[] for _ in sessions]
        cpu: list[list[float]] = [[] for _ in sessions]
        for s, f in zip(sessions, inputs):
            s.run(["top_ids"], f)
        for _ in range(args.rounds):
            for i, (s, f) in enumerate(zip(sessions, inputs)):
                started, started_cpu = time.perf_counter(), time.process_time()
                s.run(["top_ids"], f)
                wall[i].append(time.perf_counter() - started)
                cpu[i].append(time.process_time() - started_cpu)
        cells = " | ".join(f"{np.median(w) * 1e3:8.1f} / {np.median(c) * 1e3:8.1f} ms" for w, c in zip(wall, cpu))
        print(f"  (batch {batch:2d}, new {new:2d}, past {past:2d})  {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
