"""The torch-free serving runtime: ONNX Runtime sessions that write rewrites and tag (query, rewrite) pairs.

Why its own generation loop: the serving image carries onnxruntime, numpy and `tokenizers` only (no
torch, no transformers), and a rewrite request is small (a few queries, a few rewrites of at most a
dozen tokens), so per-token Python overhead and padding waste matter as much as the matrix work.
The loop therefore runs the prompt once per query (not once per rewrite), copies its KV cache to the
beams/samples, keeps everything in preallocated numpy arrays, and asks the graph for the last
position's logits only (``qrw-export`` cuts the LM head to it).

Contract with ``qrw-export`` (see ``runtime_manifest``): the folder's ``manifest.json`` names the
prompt version, the tag token ids, EOS/pad ids and what the graph was built for. ``load_model``
refuses a folder that does not match this code, with a message saying why.

Threads: one ``OnnxRewriteModel`` may be shared by any number of threads. The ONNX Runtime session
is thread-safe for ``run``; every call keeps its own arrays (and its own IO binding on CUDA); the
tokenizer is only read.

GPU: with ``onnxruntime-gpu`` and a model exported with ``--target cuda --fp16`` the session runs on
``CUDAExecutionProvider`` with IO binding (KV cache stays on the device between steps). That path is
written but has NOT been run in this repository's CI, which has no GPU; the IO-binding code itself is
exercised on CPU by the tests (``io_binding=True``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from qrw.plugin.prompt import TAGS, parse_rewrites, rewrite_prompt, tag_prompt
from qrw.plugin.runtime_manifest import MODEL_NAME, TOKENIZER_NAME, TOP_OUTPUTS, Manifest, ModelFolderError, read_manifest

log = logging.getLogger("qrw.plugin.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
STRATEGIES = ("greedy", "beam", "sample")


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How rewrites are decoded. Defaults are the serving defaults."""

    strategy: str = "greedy"
    """greedy (one sequence; prompt v2 lists every rewrite in it), beam (N best beams) or sample (N samples)."""
    max_new_tokens: int = 24
    """Cap on generated tokens per sequence (a list of a few short product phrases)."""
    length_penalty: float = 1.0
    """Beam scores are sum(log p) / length ** length_penalty (as in transformers)."""
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    seed: int | None = None
    """Sampling seed; None draws fresh randomness per call."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: choose one of {STRATEGIES}")
        if not 1 <= self.max_new_tokens <= 256:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be within 1..256")
        if self.temperature <= 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"sampling needs temperature > 0, top_k >= 0, 0 < top_p <= 1 (got {self.temperature}, {self.top_k}, {self.top_p})")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Token ids the loop needs beyond the graph itself (read from the manifest)."""

    name: str
    pad_token_id: int
    eos_token_ids: tuple[int, ...]
    tag_ids: tuple[int, ...]
    """Token id of each tag in ``prompt.TAGS`` order."""
    target: str = "cpu"

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelSpec:
        return cls(
            name=f"onnx:{manifest.model_hash[:12]}:{manifest.precision}",
            pad_token_id=manifest.pad_token_id,
            eos_token_ids=manifest.eos_token_ids,
            tag_ids=tuple(manifest.tag_ids[t.name] for t in TAGS),
            target=manifest.target,
        )


def select_providers(target: str, requested: str | None = None) -> list[str]:
    """Execution providers for a model built for ``target``, from what this onnxruntime offers.

    CUDA models run on CUDA when ``onnxruntime-gpu`` sees a GPU, else on CPU with a warning; CPU
    models (int8 ``MatMulInteger`` kernels are CPU kernels) always run on CPU unless asked otherwise.
    """
    available = ort.get_available_providers()
    if requested:
        if requested not in available:
            raise ModelFolderError(f"execution provider {requested} is not available here (available: {available})")
        return [requested] if requested == CPU else [requested, CPU]
    if target == "cuda":
        if CUDA in available:
            return [CUDA, CPU]
        log.warning("model was exported for CUDA but %s is not available (have %s): running on CPU, slowly", CUDA, available)
    return [CPU]


CUDA_OPTIONS = {"use_tf32": "0"}
"""The CUDA EP multiplies fp32 matrices in TF32 by default (10-bit mantissa): an fp32 export then
differs from PyTorch fp32 by ~0.04 in the logits (measured on an H100) and fails its parity check.
fp32 here means fp32; fp16 models are unaffected (their GEMMs are fp16 either way)."""


def _with_options(provider: str) -> str | tuple[str, dict[str, str]]:
    return (provider, dict(CUDA_OPTIONS)) if provider == CUDA else provider


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class OnnxRewriteModel:
    """A ``plugin.model.RewriteModel`` backed by an exported ONNX decoder with KV cache."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        spec: ModelSpec,
        *,
        generation: GenerationConfig | None = None,
        batch_size: int = 32,
        io_binding: bool | None = None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = spec.name
        self.generation = generation or GenerationConfig()
        self.batch_size = batch_size
        self.provider = session.get_providers()[0]
        self.io_binding = (self.provider != CPU) if io_binding is None else io_binding
        self._device = "cuda" if self.provider == CUDA else "cpu"
        inputs = {i.name: i for i in session.get_inputs()}
        for name in ("input_ids", "attention_mask"):
            if name not in inputs:
                raise ModelFolderError(f"the ONNX model has no input {name!r}: not a qrw-export decoder (inputs: {sorted(inputs)})")
        self._has_position_ids = "position_ids" in inputs
        self._past_names = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_order)
        if not self._past_names:
            raise ModelFolderError("the ONNX model has no past_key_values inputs: export with task text-generation-with-past")
        self._present_names = [n.replace("past_key_values", "present") for n in self._past_names]
        outputs = {o.name: o for o in session.get_outputs()}
        if missing := [n for n in ["logits", *self._present_names] if n not in outputs]:
            raise ModelFolderError(f"the ONNX model lacks outputs {missing[:4]}")
        # in-graph top-k (qrw-export adds it): decoding then never copies (rows x vocab) logits out
        self.top_k = int(outputs[TOP_OUTPUTS[0]].shape[-1]) if all(n in outputs for n in TOP_OUTPUTS) else 0
        shape = inputs[self._past_names[0]].shape  # [batch, kv_heads, past_len, head_dim]
        self._kv_heads, self._head_dim = int(shape[1]), int(shape[3])
        self._kv_dtype = np.float16 if inputs[self._past_names[0]].type == "tensor(float16)" else np.float32
        self._eos = np.array(spec.eos_token_ids, dtype=np.int64)
        self._tag_ids = np.array(spec.tag_ids, dtype=np.int64)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        model_path: str | Path,
        tokenizer_path: str | Path,
        spec: ModelSpec,
        *,
        provider: str | None = None,
        threads: int | None = None,
        warmup: bool = True,
        **kwargs,
    ) -> OnnxRewriteModel:
        """Open a session on ``model_path`` (no manifest check: ``load_model`` does that)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = select_providers(spec.target, provider)
        started = time.perf_counter()
        try:
            session = ort.InferenceSession(str(model_path), options, providers=[_with_options(p) for p in providers])
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # onnxruntime raises its own untyped errors for broken files
            raise ModelFolderError(f"cannot open {model_path} / {tokenizer_path}: {type(exc).__name__}: {exc}", hint="the folder is corrupt; re-export it") from exc
        model = cls(session, tokenizer, spec, **kwargs)
        if warmup:
            model.warmup()
        log.info(
            "loaded %s on %s (io_binding=%s, threads=%s) in %.1fs",
            spec.name, model.provider, model.io_binding, threads or "ort-default", time.perf_counter() - started,
        )
        return model

    def warmup(self) -> None:
        """One tagging pass and one short beam generation, so the first request pays no setup."""
        self.tag([("warm up", "warm up")])
        self.generate_ids([rewrite_prompt("warm up")], 2, dataclasses.replace(self.generation, strategy="beam", max_new_tokens=2))

    # -- RewriteModel ---------------------------------------------------------------------------

    def generate(self, queries: Sequence[str], num_rewrites: int) -> list[list[str]]:
        """Up to ``num_rewrites`` parsed, de-duplicated rewrites per query (best first)."""
        texts = self.generate_texts([rewrite_prompt(q) for q in queries], num_rewrites)
        result = []
        for candidates in texts:
            seen: set[str] = set()
            kept = []
            for text in candidates:  # each decoded sequence is a list of rewrites, best first
                for rewrite in parse_rewrites(text):
                    if rewrite.casefold() not in seen:
                        seen.add(rewrite.casefold())
                        kept.append(rewrite)
            result.append(kept[:num_rewrites])
        return result

    def tag(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        """P(tag) for every (query, rewrite): softmax over the four tag ids at the prompt's last position."""
        probs = self.tag_probs([tag_prompt(q, r) for q, r in pairs])
        return [{t.name: float(p) for t, p in zip(TAGS, row)} for row in probs]

    # -- lower-level calls (also used by the exporter's parity check and the benchmark) ----------

    def tag_probs(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 4) tag probabilities in ``TAGS`` order for ready-made tagging prompts."""
        if not prompts:
            return np.zeros((0, len(TAGS)), dtype=np.float32)
        return _softmax(self.last_logits(prompts, columns=self._tag_ids))

    def last_logits(self, prompts: Sequence[str], columns: np.ndarray | None = None) -> np.ndarray:
        """(n, V) float32 logits at each prompt's last position (one forward pass per batch)."""
        rows = []
        for start in range(0, len(prompts), self.batch_size):
            ids, mask, pos = self._pad(self._encode(prompts[start : start + self.batch_size]))
            logits, _ = self._step(ids, mask, pos, self._empty_past(len(ids)))
            rows.append(logits if columns is None else logits[:, columns])
        return np.concatenate(rows).astype(np.float32, copy=False)

    def generate_texts(self, prompts: Sequence[str], num_return: int, config: GenerationConfig | None = None) -> list[list[str]]:
        """Decoded continuations (EOS and padding removed), ``num_return`` per prompt (1 for greedy)."""
        ids = self.generate_ids(prompts, num_return, config)
        return [[self.tokenizer.decode(seq, skip_special_tokens=True) for seq in per_prompt] for per_prompt in ids]

    def generate_ids(self, prompts: Sequence[str], num_return: int, config: GenerationConfig | None = None) -> list[list[list[int]]]:
        """Generated token ids (EOS excluded) per prompt; the prompt batch is cut to ``batch_size``."""
        config = config or self.generation
        if num_return < 1:
            raise ValueError(f"num_return={num_return}: must be at least 1")
        rng = np.random.default_rng(config.seed)
        out: list[list[list[int]]] = []
        per_batch = max(1, self.batch_size // (1 if config.strategy == "greedy" else num_return))
        for start in range(0, len(prompts), per_batch):
            encoded = self._encode(prompts[start : start + per_batch])
            if config.strategy == "beam" and num_return > 1:
                out.extend(self._beam(encoded, num_return, config))
            else:
                expand = 1 if config.strategy == "greedy" else num_return
                out.extend(self._sample(encoded, expand, config, rng))
        return out

    # -- internals ------------------------------------------------------------------------------

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(prompts))]

    def _pad(self, encoded: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left-pad; position ids as transformers computes them (cumsum of the mask, 1 on padding)."""
        width = max(len(ids) for ids in encoded)
        ids = np.full((len(encoded), width), self.spec.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, seq in enumerate(encoded):
            ids[row, width - len(seq) :] = seq
            mask[row, width - len(seq) :] = 1
        pos = np.cumsum(mask, axis=1) - 1
        pos[mask == 0] = 1
        return ids, mask, pos

    def _empty_past(self, batch: int) -> list[np.ndarray]:
        empty = np.zeros((batch, self._kv_heads, 0, self._head_dim), dtype=self._kv_dtype)
        return [empty] * len(self._past_names)

    def _step(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """One forward pass; returns the last position's logits (B, V) and the new KV cache."""
        heads, past = self._run(("logits",), ids, mask, pos, past)
        return heads[0], past

    def _step_top(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[np.ndarray, np.ndarray, list]:
        """One forward pass reading only the in-graph top-k: (log-probs (B, k) float32, token ids (B, k), KV cache)."""
        (logprobs, ids_out), past = self._run(TOP_OUTPUTS, ids, mask, pos, past)
        return logprobs.astype(np.float32, copy=False), ids_out, past

    def _run(self, heads: tuple[str, ...], ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[list[np.ndarray], list]:
        """Run the graph fetching ``heads`` (last position, as numpy) and the new KV cache."""
        if self.io_binding:
            return self._run_bound(heads, ids, mask, pos, past)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._has_position_ids:
            feeds["position_ids"] = pos
        feeds.update(zip(self._past_names, past))
        outputs = self.session.run([*heads, *self._present_names], feeds)
        return [o[:, -1, :] for o in outputs[: len(heads)]], outputs[len(heads) :]

    def _run_bound(self, heads: tuple[str, ...], ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[list[np.ndarray], list]:
        """IO-bound run: the KV cache stays as OrtValues on the session's device between steps;
        only the heads asked for are copied to the host."""
        binding = self.session.io_binding()  # one per call: bindings are not shared between threads
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self._has_position_ids:
            binding.bind_cpu_input("position_ids", pos)
        for name, value in zip(self._past_names, past):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in heads:
            binding.bind_output(name, "cpu")
        for name in self._present_names:
            binding.bind_output(name, self._device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return [o.numpy()[:, -1, :] for o in outputs[: len(heads)]], list(outputs[len(heads) :])

    def _select(self, past: list, rows: np.ndarray) -> list:
        """Reorder/copy KV-cache rows (beam reordering, expanding a prompt to N rewrites)."""
        if not past or isinstance(past[0], np.ndarray):
            return [p[rows] for p in past]
        # OrtValues (IO binding): through host memory. Fine on CPU; on CUDA a device-side gather
        # would save a copy per beam step (not done: the GPU path is not exercised here).
        return [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[rows]), self._device, 0) for v in past]

    def _finish(self, tokens: np.ndarray) -> list[int]:
        """Token ids up to (excluding) the first EOS."""
        ends = np.flatnonzero(np.isin(tokens, self._eos))
        return tokens[: ends[0]].tolist() if len(ends) else tokens.tolist()

    def _sample(self, encoded: list[list[int]], expand: int, config: GenerationConfig, rng) -> list[list[list[int]]]:
        """Greedy (expand=1, argmax) or sampling (expand=N) with a KV cache; prompt run once."""
        ids, mask, pos = self._pad(encoded)
        batch, width = ids.shape
        logits, past = self._step(ids, mask, pos, self._empty_past(batch))
        rows = batch * expand
        if expand > 1:
            index = np.repeat(np.arange(batch), expand)
            logits, past, mask, pos = logits[index], self._select(past, index), mask[index], pos[index]
        steps = config.max_new_tokens
        full_mask = np.ones((rows, width + steps), dtype=np.int64)
        full_mask[:, :width] = mask
        next_pos = pos[:, -1:] + 1
        tokens = np.full((rows, steps), self.spec.pad_token_id, dtype=np.int64)
        done = np.zeros(rows, dtype=bool)
        greedy_top = config.strategy != "sample" and self.top_k > 0
        best = None  # greedy with the in-graph top-k: the next token, read from the step's top-1
        for t in range(steps):
            if config.strategy == "sample":
                chosen = self._draw(logits, config, rng)
            else:
                chosen = logits.argmax(axis=-1) if best is None else best
            chosen = np.where(done, self.spec.pad_token_id, chosen)
            tokens[:, t] = chosen
            done |= np.isin(chosen, self._eos)
            if done.all() or t == steps - 1:
                break
            step_mask = np.ascontiguousarray(full_mask[:, : width + t + 1])
            if greedy_top:  # top-1 of TopK (ties: the lower id, as argmax)
                _, top_ids, past = self._step_top(chosen[:, None], step_mask, next_pos, past)
                best = top_ids[:, 0]
            else:
                logits, past = self._step(chosen[:, None], step_mask, next_pos, past)
            next_pos = next_pos + 1
        seqs = [self._finish(tokens[r]) for r in range(rows)]
        return [seqs[b * expand : (b + 1) * expand] for b in range(batch)]

    @staticmethod
    def _draw(logits: np.ndarray, config: GenerationConfig, rng) -> np.ndarray:
        """Temperature, top-k, top-p, then one draw per row."""
        scores = logits.astype(np.float64) / config.temperature
        vocab = scores.shape[1]
        if 0 < config.top_k < vocab:
            kth = np.partition(scores, vocab - config.top_k, axis=1)[:, vocab - config.top_k][:, None]
            scores = np.where(scores < kth, -np.inf, scores)
        probs = _softmax(scores)
        if config.top_p < 1.0:
            order = np.argsort(-probs, axis=1)
            sorted_probs = np.take_along_axis(probs, order, axis=1)
            cumulative = np.cumsum(sorted_probs, axis=1)
            drop_sorted = (cumulative - sorted_probs) >= config.top_p  # keep the smallest set reaching top_p
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=1)
            probs = np.where(drop, 0.0, probs)
            probs /= probs.sum(axis=1, keepdims=True)
        cumulative = np.cumsum(probs, axis=1)
        draws = rng.random((probs.shape[0], 1)) * cumulative[:, -1:]
        return np.minimum((cumulative < draws).sum(axis=1), vocab - 1)

    def _beam(self, encoded: list[list[int]], beams: int, config: GenerationConfig) -> list[list[list[int]]]:
        """Beam search, ``beams`` wide, returning the ``beams`` best finished hypotheses per prompt.

        Like transformers (early_stopping=False): each step keeps the 2N best continuations, an EOS
        among the first N finishes a hypothesis scored sum(log p) / length ** length_penalty, and a
        prompt is done once N are finished and no running beam can beat the worst of them.
        """
        ids, mask, pos = self._pad(encoded)
        batch, width = ids.shape
        logits, past = self._step(ids, mask, pos, self._empty_past(batch))
        index = np.repeat(np.arange(batch), beams)
        logits, past, pos = logits[index], self._select(past, index), pos[index]
        rows = batch * beams
        steps = config.max_new_tokens
        full_mask = np.ones((rows, width + steps), dtype=np.int64)
        full_mask[:, :width] = mask[index]
        next_pos = pos[:, -1:] + 1
        scores = np.zeros((batch, beams))
        scores[:, 1:] = -1e9  # all beams start identical: only the first one may expand at step 0
        seqs = np.zeros((rows, 0), dtype=np.int64)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        done = np.zeros(batch, dtype=bool)
        eos = set(self.spec.eos_token_ids)
        lp = config.length_penalty
        vocab = logits.shape[1]
        take = min(2 * beams, beams * vocab)
        use_top = self.top_k >= take  # the in-graph top-k holds every candidate a step can keep
        # per row: candidate log-probs (rows, width) and their token ids; first step from the prompt pass
        cand_logp, cand_ids = _log_softmax(logits.astype(np.float32)), None
        for t in range(steps):
            width_c = cand_logp.shape[1]
            candidates = (scores.reshape(-1, 1) + cand_logp).reshape(batch, beams * width_c)
            top = np.argpartition(-candidates, take - 1, axis=1)[:, :take]
            top_scores = np.take_along_axis(candidates, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
            if cand_ids is not None:  # positions in the top-k lists -> (beam * vocab + token id)
                row = np.arange(batch)[:, None] * beams + top // width_c
                top = (top // width_c) * vocab + cand_ids[row, top % width_c]
            new_src = np.tile(np.arange(beams), (batch, 1))
            new_tok = np.full((batch, beams), self.spec.pad_token_id, dtype=np.int64)
            new_scores = np.full((batch, beams), -1e9)
            for b in range(batch):
                if done[b]:
                    continue
                kept = 0
                for rank in range(take):
                    src, tok, score = int(top[b, rank]) // vocab, int(top[b, rank]) % vocab, float(top_scores[b, rank])
                    if tok in eos:
                        if rank < beams:
                            finished[b].append((score / ((t + 1) ** lp), seqs[b * beams + src].tolist()))
                        continue
                    new_src[b, kept], new_tok[b, kept], new_scores[b, kept] = src, tok, score
                    kept += 1
                    if kept == beams:
                        break
                if len(finished[b]) >= beams:
                    finished[b].sort(key=lambda h: -h[0])
                    del finished[b][beams:]
                    done[b] = finished[b][-1][0] >= new_scores[b].max() / ((t + 1) ** lp)
            flat = (np.arange(batch)[:, None] * beams + new_src).ravel()
            seqs = np.concatenate([seqs[flat], new_tok.reshape(-1, 1)], axis=1)
            scores = new_scores
            if done.all() or t == steps - 1:
                break
            past = self._select(past, flat)
            step_mask = np.ascontiguousarray(full_mask[:, : width + t + 1])
            if use_top:
                cand_logp, cand_ids, past = self._step_top(new_tok.reshape(-1, 1), step_mask, next_pos, past)
            else:
                logits, past = self._step(new_tok.reshape(-1, 1), step_mask, next_pos, past)
                cand_logp = _log_softmax(logits.astype(np.float32))
            next_pos = next_pos + 1
        results = []
        length = seqs.shape[1]
        for b in range(batch):
            hyps = list(finished[b])
            if not done[b]:
                hyps += [(scores[b, k] / (length**lp), seqs[b * beams + k].tolist()) for k in range(beams) if scores[b, k] > -1e8]
            hyps.sort(key=lambda h: -h[0])
            results.append([h[1] for h in hyps[:beams]])
        return results


def _layer_order(name: str) -> tuple[int, str]:
    parts = name.split(".")  # past_key_values.{i}.key|value
    return int(parts[1]), parts[2]


def load_model(
    folder: str | os.PathLike,
    *,
    provider: str | None = None,
    threads: int | None = None,
    generation: GenerationConfig | None = None,
    batch_size: int = 32,
    io_binding: bool | None = None,
    warmup: bool = True,
    verify_hash: bool = False,
) -> OnnxRewriteModel:
    """Load an exported folder after checking its manifest (see ``runtime_manifest.read_manifest``)."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify_hash=verify_hash)
    spec = ModelSpec.from_manifest(manifest)
    model = OnnxRewriteModel.from_files(
        folder / MODEL_NAME,
        folder / TOKENIZER_NAME,
        spec,
        provider=provider,
        threads=threads,
        warmup=warmup,
        generation=generation,
        batch_size=batch_size,
        io_binding=io_binding,
    )
    model.manifest = manifest
    _check_tag_ids(model, manifest)
    return model


def _check_tag_ids(model: OnnxRewriteModel, manifest: Manifest) -> None:
    """The tokenizer in the folder must map each tag token to the id the manifest names."""
    for tag in manifest.tags:
        ids = model.tokenizer.encode(tag.token, add_special_tokens=False).ids
        if ids != [tag.id]:
            raise ModelFolderError(
                f"tokenizer.json encodes tag {tag.name!r} ({tag.token!r}) as {ids}, the manifest says [{tag.id}]",
                hint="the folder mixes files from different exports; re-export it",
            )
