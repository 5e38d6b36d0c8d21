"""The torch-free serving runtime: ONNX Runtime sessions that write rewrites and tag (query, rewrite) pairs.

Why its own generation loop: the serving image carries onnxruntime, numpy and `tokenizers` only (no
torch, no transformers), and a rewrite request is small (a few queries, a few rewrites of a dozen
tokens), so per-token Python overhead and padding waste matter as much as the matrix work.

The serving call is ``rewrite_and_tag(queries, n)``, the least work per query that prompt contract v2
allows (``qrw.plugin.prompt``):

1. one forward pass over the rewrite prompts ``Query: {q}\nRewrites:`` (left-padded batch);
2. greedy decoding of one sequence per query, which lists the rewrites (``r1 ; r2``), stopping at
   EOS, at a newline, once ``n`` separators are out, or at the token cap of the manifest (taken from
   the training targets); finished rows leave the batch;
3. one forward pass that tags every rewrite of every query, reusing the KV cache of the prompt's
   shared prefix ``Query: {q}\n`` from step 1: only ``Rewrite: {r}\nTag:`` is computed per rewrite.
   The prefix KV is spliced in front of left-padded suffixes; the attention mask covers the gap.

The graph returns the last position's logits only and, from ``qrw-export``, the top-16 next tokens,
so a decoding step never copies vocabulary-sized rows out. Beam search and sampling stay available
(``GenerationConfig.strategy``) and match transformers.

Contract with ``qrw-export`` (see ``runtime_manifest``): the folder's ``manifest.json`` names the
prompt version, the tag token ids, EOS/pad ids, the token cap and what the graph was built for.
``load_model`` refuses a folder that does not match this code, with a message saying why.

Threads: one ``OnnxRewriteModel`` may be shared by any number of threads. The ONNX Runtime session
is thread-safe for ``run``; every call keeps its own arrays (and its own IO binding on CUDA); the
tokenizer is only read.

GPU: with ``onnxruntime-gpu`` and a model exported with ``--target cuda --fp16`` the session runs on
``CUDAExecutionProvider`` with IO binding: the KV cache stays on the device between steps, and
reordering it (beams, finished rows, the shared prefix) runs as a small Gather/Slice graph on the
device too. The IO-binding code is exercised on CPU by the tests (``io_binding=True``); the CUDA
path itself has not been run since these changes (no GPU in this repository's CI).
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

from qrw.plugin.prompt import NO_REWRITE, REWRITE_SEPARATOR, TAGS, clip_query, parse_rewrites, query_prefix, rewrite_prompt, tag_prompt
from qrw.plugin.runtime_manifest import MODEL_NAME, TOKENIZER_NAME, TOP_OUTPUTS, Manifest, ModelFolderError, read_manifest

NUM_LOGITS = "num_logits"
"""Graph input of the qrw graph (int64 [1]): logits (and top-k) for the last N positions; fed 1 unless
verifying drafts. Graphs without it (optimum's) return the last position only."""

log = logging.getLogger("qrw.plugin.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
STRATEGIES = ("greedy", "beam", "sample")


DEFAULT_MAX_NEW_TOKENS = 24
"""Token cap when neither the GenerationConfig nor the manifest names one."""


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How rewrites are decoded. Defaults are the serving defaults."""

    strategy: str = "greedy"
    """greedy (one sequence listing the rewrites: the serving default), beam (N best beams, each a
    list) or sample (N samples)."""
    max_new_tokens: int | None = None
    """Cap on generated tokens per sequence; None: the manifest's cap (from the training targets), else 24."""
    stop_at_newline: bool = True
    """Greedy: end a sequence at a token holding a newline (the list is one line) and once it holds
    as many separators as rewrites were asked for. Off, greedy equals transformers' greedy search."""
    lookahead: int = 4
    """Greedy, one prompt at a time, graphs with a ``num_logits`` input: draft up to this many tokens
    by prompt lookup (the continuation of the latest earlier occurrence of the last tokens, in the
    prompt or the text so far) and verify them in one pass; the output is the greedy output, in
    fewer passes when rewrites repeat the query's words. 0: one token per pass."""
    length_penalty: float = 1.0
    """Beam scores are sum(log p) / length ** length_penalty (as in transformers)."""
    propose: bool = False
    """Greedy: when the model's first choice is ``none`` (no rewrite needed), take its best other first
    token instead, so every query gets a proposal and the tags and the gate decide whether it is
    served (the tagger as the trigger). Off: the model's own ``none`` ends the query's rewriting."""
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    seed: int | None = None
    """Sampling seed; None draws fresh randomness per call."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: choose one of {STRATEGIES}")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= 256:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be within 1..256")
        if not 0 <= self.lookahead <= 16:
            raise ValueError(f"lookahead={self.lookahead}: must be within 0..16")
        if self.temperature <= 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"sampling needs temperature > 0, top_k >= 0, 0 < top_p <= 1 (got {self.temperature}, {self.top_k}, {self.top_p})")


@dataclasses.dataclass(frozen=True)
class QueryOutput:
    """What ``rewrite_and_tag`` found for one query."""

    rewrites: list[str]
    probabilities: list[dict[str, float]]
    """One row per rewrite: P(tag) for every tag name in ``prompt.TAGS``."""
    text: str
    """The generated sequence, decoded (before parsing)."""
    generated_tokens: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Token ids the loop needs beyond the graph itself (read from the manifest)."""

    name: str
    pad_token_id: int
    eos_token_ids: tuple[int, ...]
    tag_ids: tuple[int, ...]
    """Token id of each tag in ``prompt.TAGS`` order."""
    target: str = "cpu"
    max_new_tokens: int | None = None
    """The manifest's token cap (None: ``DEFAULT_MAX_NEW_TOKENS``)."""
    model_hash: str = ""
    """sha256 of the graph (the manifest's): names the model in persistent caches."""

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelSpec:
        return cls(
            name=f"onnx:{manifest.model_hash[:12]}:{manifest.precision}",
            pad_token_id=manifest.pad_token_id,
            eos_token_ids=manifest.eos_token_ids,
            tag_ids=tuple(manifest.tag_ids[t.name] for t in TAGS),
            target=manifest.target,
            max_new_tokens=manifest.max_new_tokens,
            model_hash=manifest.model_hash,
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
        self._has_num_logits = NUM_LOGITS in inputs
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
        self._eos_set = frozenset(spec.eos_token_ids)
        self._tag_ids = np.array(spec.tag_ids, dtype=np.int64)
        self.model_hash = spec.model_hash
        self.max_new_tokens = spec.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        vocab = outputs["logits"].shape[-1]
        self._newline, self._separators = _token_tables(tokenizer, vocab if isinstance(vocab, int) else 0)
        self._none_id = none_token_id(tokenizer)
        self._kv_ops: _KVOps | None = None  # device-side KV gather (IO binding), built on first use
        self.warmed = False

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

    def warmup(self, queries: Sequence[str] = ("warm up", "usb c cable 2m")) -> None:
        """Run the serving path at its largest shapes once (the full token cap, several rewrites to
        tag), so the first request pays neither kernel set-up nor memory-arena growth."""
        n = 4
        self.rewrite_and_tag(list(queries), n)
        encoded = self._encode([rewrite_prompt(q) for q in queries])
        self._greedy(encoded, self.max_new_tokens, 0, stop_at_newline=False)
        self.tag([(q, f"{q} rewrite {i}") for q in queries for i in range(n)])
        self.warmed = True

    # -- RewriteModel ---------------------------------------------------------------------------

    def generate(self, queries: Sequence[str], num_rewrites: int) -> list[list[str]]:
        """Up to ``num_rewrites`` parsed, de-duplicated rewrites per query (best first)."""
        config = self.generation
        if config.strategy == "greedy":
            return [out.rewrites for out in self._rewrite(queries, num_rewrites, config, tag=False)]
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
        """P(tag) for every (query, rewrite): softmax over the four tag ids at the prompt's last position.

        Pairs that share a query share one pass over its prefix ``Query: {q}\n`` (its KV cache is
        spliced in front of each ``Rewrite: {r}\nTag:``); a query with one pair runs as one prompt.
        """
        if not pairs:
            return []
        groups: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(clip_query(query), []).append(i)
        if all(len(rows) == 1 for rows in groups.values()):
            probs = self.tag_probs([tag_prompt(q, r) for q, r in pairs])
        else:
            queries = list(groups)
            prefix = self._prefix_pass(queries)
            rewrites = [[pairs[i][1] for i in groups[q]] for q in queries]
            per_query = self._tag_with_prefix(queries, prefix, rewrites)
            probs = np.zeros((len(pairs), len(TAGS)), dtype=np.float32)
            for q, rows in zip(queries, per_query):
                probs[groups[q]] = rows
        return [{t.name: float(p) for t, p in zip(TAGS, row)} for row in probs]

    def rewrite_and_tag(self, queries: Sequence[str], num_rewrites: int) -> list[list[tuple[str, dict[str, float]]]]:
        """For each query, up to ``num_rewrites`` (rewrite, P(tag)) pairs from one greedy list and one
        tagging pass that reuses the prompt's prefix KV cache (see the module docstring)."""
        outputs = self.rewrite_outputs(queries, num_rewrites)
        return [list(zip(out.rewrites, out.probabilities)) for out in outputs]

    def rewrite_outputs(self, queries: Sequence[str], num_rewrites: int, config: GenerationConfig | None = None) -> list[QueryOutput]:
        """``rewrite_and_tag`` with the generated text and token counts (benchmarks, explain)."""
        config = config or self.generation
        if config.strategy != "greedy":
            rewrites = self.generate(queries, num_rewrites)
            tags = self.tag([(q, r) for q, rs in zip(queries, rewrites) for r in rs])
            out, start = [], 0
            for rs in rewrites:
                out.append(QueryOutput(rs, tags[start : start + len(rs)], " ; ".join(rs), 0))
                start += len(rs)
            return out
        return self._rewrite(queries, num_rewrites, config, tag=True)

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
                out.extend(self._beam(encoded, num_return, self._with_cap(config)))
            elif config.strategy == "greedy":
                seqs, _ = self._greedy(encoded, self._with_cap(config).max_new_tokens, 0, stop_at_newline=config.stop_at_newline,
                                       propose=config.propose)
                out.extend([seq] for seq in seqs)
            else:
                expand = 1 if config.strategy == "greedy" else num_return
                out.extend(self._sample(encoded, expand, self._with_cap(config), rng))
        return out

    # -- internals ------------------------------------------------------------------------------

    def _with_cap(self, config: GenerationConfig) -> GenerationConfig:
        return config if config.max_new_tokens else dataclasses.replace(config, max_new_tokens=self.max_new_tokens)

    def _rewrite(self, queries: Sequence[str], num_rewrites: int, config: GenerationConfig, *, tag: bool) -> list[QueryOutput]:
        """Greedy lists for ``queries`` (in prompt batches of ``batch_size``), then their tags."""
        cap = self._with_cap(config).max_new_tokens
        results: list[QueryOutput] = []
        for start in range(0, len(queries), self.batch_size):
            batch = [clip_query(q) for q in queries[start : start + self.batch_size]]
            encoded = self._encode([rewrite_prompt(q) for q in batch])
            seqs, prompt = self._greedy(encoded, cap, num_rewrites, stop_at_newline=config.stop_at_newline, keep_prompt=tag,
                                        propose=config.propose)
            texts = self.tokenizer.decode_batch(seqs, skip_special_tokens=True)
            rewrites = [parse_rewrites(text, limit=num_rewrites) for text in texts]
            if tag and any(rewrites):
                prefix = self._prefix_from_prompt(batch, encoded, prompt)
                probs = self._tag_with_prefix(batch, prefix, rewrites)
            else:
                probs = [np.zeros((len(r), len(TAGS)), dtype=np.float32) for r in rewrites]
            for rs, rows, text, seq in zip(rewrites, probs, texts, seqs):
                results.append(QueryOutput(rs, [{t.name: float(p) for t, p in zip(TAGS, row)} for row in rows] if tag else [], text, len(seq)))
        return results

    def _greedy(self, encoded: list[list[int]], cap: int, num_rewrites: int, *, stop_at_newline: bool = True,
                keep_prompt: bool = False, lookahead: int | None = None, propose: bool = False) -> tuple[list[list[int]], tuple | None]:
        """Greedy decoding with the KV cache; returns (token ids per prompt without EOS, prompt state).

        A row ends at EOS, at the cap, and with ``stop_at_newline`` at a token holding a newline or
        once it has produced ``num_rewrites`` separators (0: no separator stop), or when its first
        token is ``none`` (the prompt contract's "no rewrite needed": the rest of the line is never
        read, so its decode step is saved; on 1,593 judged and held-out pseudo-queries the default
        model wrote nothing after it: ``benchmarks/none_answers.py``). Finished rows feed
        padding until a quarter of the batch is finished, then leave it (their KV is dropped), so a
        long list does not make every short one pay for its steps. The prompt state is the prompt
        pass's (KV cache, mask), kept for the tagging pass when asked for. With ``propose`` the first
        token is never ``none`` (``GenerationConfig.propose``).
        """
        ids, mask, pos = self._pad(encoded)
        batch, width = ids.shape
        if propose and self._none_id is not None:
            nxt, past = self._next_not_none(ids, mask, pos, self._empty_past(batch))
        else:
            nxt, past = self._next(ids, mask, pos, self._empty_past(batch))
        prompt = (past, mask) if keep_prompt else None
        stop_at_none = stop_at_newline and self._none_id is not None
        if batch == 1 and stop_at_none and int(nxt[0]) == self._none_id:
            return [[int(nxt[0])]], prompt
        lookahead = self.generation.lookahead if lookahead is None else lookahead
        if batch == 1 and lookahead > 0 and self._has_num_logits and self.top_k:
            seq = self._lookup_decode(encoded[0], int(nxt[0]), past, cap, num_rewrites, stop_at_newline, lookahead)
            return [seq], prompt
        full_mask = np.ones((batch, width + cap), dtype=np.int64)
        full_mask[:, :width] = mask
        tokens = np.full((batch, cap), self.spec.pad_token_id, dtype=np.int64)
        lengths = np.zeros(batch, dtype=np.int64)
        separators = np.zeros(batch, dtype=np.int64)
        active = np.arange(batch)  # original row of each row in the running batch
        done = np.zeros(batch, dtype=bool)  # per running row
        next_pos = pos[:, -1:] + 1
        for t in range(cap):
            chosen = np.where(done, self.spec.pad_token_id, nxt)
            live_rows = active[~done]
            tokens[live_rows, t] = chosen[~done]
            lengths[live_rows] = t + 1
            finished = np.isin(chosen, self._eos)
            if t == 0 and stop_at_none:
                finished |= chosen == self._none_id
            if stop_at_newline:
                finished |= self._newline[chosen]
                if num_rewrites:
                    separators[active] += np.where(done, 0, self._separators[chosen])
                    finished |= separators[active] >= num_rewrites
            done |= finished
            if done.all() or t == cap - 1:
                break
            if done.sum() * 4 >= len(active) and len(active) > 1:  # drop finished rows
                keep = np.flatnonzero(~done)
                past, active, chosen, next_pos = self._select(past, keep), active[keep], chosen[keep], next_pos[keep]
                done = done[keep]
            step_mask = full_mask[active, : width + t + 1]
            nxt, past = self._next(chosen[:, None], step_mask, next_pos, past)
            next_pos = next_pos + 1
        seqs = []
        for row in range(batch):
            seq = tokens[row, : lengths[row]]
            if len(seq) and seq[-1] in self._eos:
                seq = seq[:-1]
            seqs.append(seq.tolist())
        return seqs, prompt

    def _lookup_decode(self, prompt: list[int], first: int, past: list, cap: int, num_rewrites: int, stop_at_newline: bool,
                       lookahead: int) -> list[int]:
        """Greedy decoding of one prompt with prompt-lookup drafts, verified in one pass each.

        Each pass feeds the token just chosen plus up to ``lookahead`` drafted tokens (what followed
        the latest earlier occurrence of the last 3, 2 or 1 tokens), reads the model's greedy choice
        after every fed position, keeps the drafts up to the first disagreement and the model's token
        after them, and cuts the KV cache back to the kept positions. The tokens are those of plain
        greedy decoding; the stop rules apply token by token, as there.
        """
        context = list(prompt)
        out: list[int] = []
        separators = 0
        length = len(prompt)  # KV positions so far
        token = first

        while True:
            out.append(token)
            if token in self._eos_set or len(out) >= cap:
                break
            if stop_at_newline:
                if self._newline[token]:
                    break
                separators += int(self._separators[token])
                if num_rewrites and separators >= num_rewrites:
                    break
            context.append(token)
            draft = _lookup_draft(context, min(lookahead, cap - len(out)))
            feed = np.array([[token, *draft]], dtype=np.int64)
            n = feed.shape[1]
            mask = np.ones((1, length + n), dtype=np.int64)
            pos = np.arange(length, length + n, dtype=np.int64)[None, :]
            (top_ids,), past = self._run((TOP_OUTPUTS[1],), feed, mask, pos, past, num_logits=n)

            choices = top_ids[0, :, 0]
            accepted = 0
            stopped = False
            while accepted < len(draft) and draft[accepted] == choices[accepted]:
                tok = draft[accepted]
                accepted += 1
                out.append(tok)
                if tok in self._eos_set or len(out) >= cap or (stop_at_newline and self._newline[tok]):
                    stopped = True
                    break
                if stop_at_newline:
                    separators += int(self._separators[tok])
                    if num_rewrites and separators >= num_rewrites:
                        stopped = True
                        break
                context.append(tok)
            if stopped:
                break
            length += 1 + accepted
            if accepted < len(draft):  # drop the KV of the rejected drafts
                past = self._gather_kv(past, np.zeros(1, dtype=np.int64), length)
            token = int(choices[accepted])
        if out and out[-1] in self._eos_set:
            out = out[:-1]
        return out

    def _next(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """One forward pass; the most probable next token per row (from the in-graph top-k if present)."""
        if self.top_k:
            (top_ids,), past = self._run((TOP_OUTPUTS[1],), ids, mask, pos, past)
            return top_ids[:, 0], past
        logits, past = self._step(ids, mask, pos, past)
        return logits.argmax(axis=-1), past

    def _next_not_none(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """``_next``, but a row whose most probable token is ``none`` gets its second choice."""
        if self.top_k:
            (top_ids,), past = self._run((TOP_OUTPUTS[1],), ids, mask, pos, past)
            return np.where(top_ids[:, 0] == self._none_id, top_ids[:, 1], top_ids[:, 0]), past
        logits, past = self._step(ids, mask, pos, past)
        logits = logits.copy()
        logits[:, self._none_id] = -np.inf
        return logits.argmax(axis=-1), past

    def _prefix_ids(self, queries: Sequence[str]) -> list[list[int]]:
        return self._encode([query_prefix(q) for q in queries])

    def _prefix_pass(self, queries: Sequence[str]) -> _Prefix:
        """A forward pass over the prefixes ``Query: {q}\n`` alone (for ``tag``)."""
        prefix_ids = self._prefix_ids(queries)
        ids, mask, pos = self._pad(prefix_ids)
        _, past = self._step(ids, mask, pos, self._empty_past(len(ids)))
        return _Prefix(past, mask, mask.shape[1], np.array([len(p) for p in prefix_ids]), list(prefix_ids))

    def _prefix_from_prompt(self, queries: Sequence[str], encoded: list[list[int]], prompt: tuple) -> _Prefix:
        """The prefix KV cache inside the rewrite prompts' KV cache.

        Causal attention makes the KV of positions 0..p-1 the same whether or not more tokens follow,
        so the prompt pass already computed each query's prefix. With left padding every prompt ends at
        the same column; the prefix ends ``c`` tokens earlier (``c`` = the tokens of ``Rewrites:``).
        Where ``c`` differs between rows, the extra columns are masked out; a prompt whose tokens do not
        start with its prefix's tokens (a tokenizer merging across the newline) is tagged without reuse.
        """
        past, mask = prompt
        width = mask.shape[1]
        prefix_ids = self._prefix_ids(queries)
        usable = [enc[: len(p)] == p for enc, p in zip(encoded, prefix_ids)]
        tails = [len(enc) - len(p) for enc, p, ok in zip(encoded, prefix_ids, usable) if ok]
        length = width - min(tails) if tails else width
        prefix_mask = mask[:, :length].copy()
        for row, (enc, p, ok) in enumerate(zip(encoded, prefix_ids, usable)):
            if not ok:
                prefix_mask[row] = 0
            else:
                prefix_mask[row, width - (len(enc) - len(p)) : length] = 0
        return _Prefix(past, prefix_mask, length, np.array([len(p) for p in prefix_ids]), [p if ok else None for p, ok in zip(prefix_ids, usable)])

    def _tag_with_prefix(self, queries: Sequence[str], prefix: _Prefix, rewrites: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """(len(rewrites[b]), 4) tag probabilities per query: one pass over every ``Rewrite: {r}\nTag:``
        suffix, behind its query's prefix KV (see ``_prefix_from_prompt``)."""
        rows: list[tuple[int, int, list[int]]] = []  # (query, rewrite index, suffix ids)
        fallback: list[tuple[int, int, str]] = []
        prompts = [tag_prompt(q, r) for q, rs in zip(queries, rewrites) for r in rs]
        encoded = iter(self._encode(prompts)) if prompts else iter(())
        for b, (query, rs) in enumerate(zip(queries, rewrites)):
            p = prefix.ids[b]
            for k, rewrite in enumerate(rs):
                full = next(encoded)
                if p is not None and full[: len(p)] == p and len(full) > len(p):
                    rows.append((b, k, full[len(p) :]))
                else:
                    fallback.append((b, k, tag_prompt(query, rewrite)))
        out = [np.zeros((len(rs), len(TAGS)), dtype=np.float32) for rs in rewrites]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            qidx = np.array([b for b, _, _ in chunk])
            ids, smask, _ = self._pad([suffix for _, _, suffix in chunk])
            mask = np.concatenate([prefix.mask[qidx], smask], axis=1)
            pos = prefix.real[qidx][:, None] + np.cumsum(smask, axis=1) - 1
            pos[smask == 0] = 1
            past = self._gather_kv(prefix.past, qidx, prefix.length)
            logits, _ = self._step(ids, mask, pos, past)
            probs = _softmax(logits[:, self._tag_ids].astype(np.float32))
            for (b, k, _), row in zip(chunk, probs):
                out[b][k] = row
        if fallback:
            probs = self.tag_probs([prompt for _, _, prompt in fallback])
            for (b, k, _), row in zip(fallback, probs):
                out[b][k] = row
        return out

    def _gather_kv(self, past: list, rows: np.ndarray, length: int | None = None) -> list:
        """KV-cache rows ``rows`` (in that order, repeats allowed), positions ``:length``.

        numpy arrays (CPU) are indexed in place; OrtValues (IO binding) go through a Gather/Slice
        graph on their own device, so a CUDA KV cache never visits host memory.
        """
        if not past:
            return past
        if isinstance(past[0], np.ndarray):
            if length is None:
                return [p[rows] for p in past]
            return [p[rows, :, :length] for p in past]
        if self._kv_ops is None:
            self._kv_ops = _KVOps(len(past), past[0].data_type(), self.session.get_providers(), self._device)
        return self._kv_ops.gather(past, rows, length)


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

    def _run(self, heads: tuple[str, ...], ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list,
             num_logits: int | None = None) -> tuple[list[np.ndarray], list]:
        """Run the graph fetching ``heads`` and the new KV cache. Heads are the last position's (B, ...)
        or, with ``num_logits`` (graphs that take it), the last ``num_logits`` positions' (B, n, ...)."""
        if self.io_binding:
            return self._run_bound(heads, ids, mask, pos, past, num_logits)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._has_position_ids:
            feeds["position_ids"] = pos
        if self._has_num_logits:
            feeds[NUM_LOGITS] = np.array([num_logits or 1], dtype=np.int64)
        feeds.update(zip(self._past_names, past))
        outputs = self.session.run([*heads, *self._present_names], feeds)
        picked = outputs[: len(heads)] if num_logits is not None else [o[:, -1, :] for o in outputs[: len(heads)]]
        return picked, outputs[len(heads) :]

    def _run_bound(self, heads: tuple[str, ...], ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list,
                   num_logits: int | None = None) -> tuple[list[np.ndarray], list]:
        """IO-bound run: the KV cache stays as OrtValues on the session's device between steps;
        only the heads asked for are copied to the host."""
        binding = self.session.io_binding()  # one per call: bindings are not shared between threads
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self._has_position_ids:
            binding.bind_cpu_input("position_ids", pos)
        if self._has_num_logits:
            binding.bind_cpu_input(NUM_LOGITS, np.array([num_logits or 1], dtype=np.int64))
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
        picked = [o.numpy() if num_logits is not None else o.numpy()[:, -1, :] for o in outputs[: len(heads)]]
        return picked, list(outputs[len(heads) :])

    def _select(self, past: list, rows: np.ndarray) -> list:
        """Reorder/copy KV-cache rows (beam reordering, expanding a prompt, dropping finished rows)."""
        return self._gather_kv(past, rows)

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


@dataclasses.dataclass
class _Prefix:
    """The KV cache of a batch of ``Query: {q}\n`` prefixes, ready to be spliced before suffixes."""

    past: list
    """KV cache of the padded prompt batch (numpy arrays, or OrtValues with IO binding)."""
    mask: np.ndarray
    """(B, length) attention mask of the prefix columns (columns that are not the prefix zeroed)."""
    length: int
    """How many KV positions belong to the prefix columns."""
    real: np.ndarray
    """(B,) real prefix tokens per query: the position of the first suffix token."""
    ids: list
    """The prefix token ids per query, None where the prompt's tokens did not start with them."""


class _KVOps:
    """A tiny graph that gathers KV-cache rows and cuts positions on the cache's own device."""

    def __init__(self, count: int, ort_type: str, providers: list[str], device: str) -> None:
        import onnx
        from onnx import TensorProto, helper

        elem = TensorProto.FLOAT16 if "float16" in ort_type else TensorProto.FLOAT
        nodes, inputs, outputs = [], [], []
        inputs.append(helper.make_tensor_value_info("rows", TensorProto.INT64, ["R"]))
        inputs.append(helper.make_tensor_value_info("length", TensorProto.INT64, [1]))
        zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
        axis = helper.make_tensor("axis", TensorProto.INT64, [1], [2])
        for i in range(count):
            inputs.append(helper.make_tensor_value_info(f"kv{i}", elem, ["B", "H", "T", "D"]))
            outputs.append(helper.make_tensor_value_info(f"out{i}", elem, ["R", "H", "L", "D"]))
            nodes.append(helper.make_node("Gather", [f"kv{i}", "rows"], [f"rows{i}"], axis=0))
            nodes.append(helper.make_node("Slice", [f"rows{i}", "zero", "length", "axis"], [f"out{i}"]))
        graph = helper.make_graph(nodes, "qrw_kv_gather", inputs, outputs, initializer=[zero, axis])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=[_with_options(p) for p in providers])
        self.count = count
        self.device = device
        onnx.checker.check_model(model)

    def gather(self, past: list, rows: np.ndarray, length: int | None) -> list:
        binding = self.session.io_binding()
        binding.bind_cpu_input("rows", np.ascontiguousarray(rows, dtype=np.int64))
        binding.bind_cpu_input("length", np.array([length if length is not None else 2**62], dtype=np.int64))
        for i, value in enumerate(past):
            binding.bind_ortvalue_input(f"kv{i}", value)
            binding.bind_output(f"out{i}", self.device)
        self.session.run_with_iobinding(binding)
        return list(binding.get_outputs())


def _lookup_draft(context: list[int], limit: int, max_ngram: int = 3) -> list[int]:
    """Up to ``limit`` tokens that followed the latest earlier occurrence of the context's last
    ``max_ngram`` (then fewer) tokens; [] when none occurs. Rewrites repeat the query's words, and
    the query is in the prompt, so its continuation is often the model's own."""
    if limit <= 0:
        return []
    size = len(context)
    for n in range(min(max_ngram, size - 1), 0, -1):
        tail = context[size - n :]
        for start in range(size - n - 1, -1, -1):
            if context[start : start + n] == tail:
                return context[start + n : start + n + limit]
    return []


def _token_tables(tokenizer: Tokenizer, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: does its text hold a newline; how many rewrite separators does it hold.

    The greedy list stops at a newline (a list is one line) and once it holds enough separators;
    reading both from tables keeps the check per step to two array lookups.
    """
    size = max(tokenizer.get_vocab_size(with_added_tokens=True), vocab)
    known = tokenizer.get_vocab_size(with_added_tokens=True)
    texts = tokenizer.decode_batch([[i] for i in range(known)], skip_special_tokens=False)
    newline = np.zeros(size, dtype=bool)
    separators = np.zeros(size, dtype=np.int64)
    newline[:known] = ["\n" in text for text in texts]
    separators[:known] = [text.count(REWRITE_SEPARATOR) for text in texts]
    return newline, separators


def none_token_id(tokenizer: Tokenizer) -> int | None:
    """The single token the model starts `` none`` with after ``Rewrites:`` (None if it takes several)."""
    ids = tokenizer.encode(" " + NO_REWRITE, add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


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
