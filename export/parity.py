"""Parity of an exported graph with PyTorch on a fixed prompt set, read through the serving runtime.

Why through the runtime: the thing to trust is what serves (its padding, position ids, KV-cache loop
and tag read-out), not just the graph. So the ONNX side here is ``qrw.plugin.runtime`` itself, and
the PyTorch side is plain ``transformers`` (forward pass and ``generate``) on the same checkpoint.

Figures (all against PyTorch fp32, left-padded batches on both sides):

* ``tokenization_agreement``: runtime (``tokenizers``) ids == transformers ids, per prompt
* ``max_logit_diff``: max |logit| difference at the last position of every prompt (all vocab; for a
  graph with a shortlist head, at the columns it scores in fp32 and the runtime reads: the reference's
  top 16 and the tag tokens)
* ``greedy_agreement``: share of rewrite prompts whose greedy continuation is identical
* ``tag_agreement``: share of tagging prompts whose most probable tag is the same
* ``max_tag_prob_diff``: max |P(tag)| difference over all pairs and tags
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from qrw.errors import QrwError
from qrw.plugin.prompt import TAGS, rewrite_prompt, tag_prompt

PARITY_QUERIES: tuple[str, ...] = (
    "laptop",
    "wireless mouse",
    "hp toner 305a",
    "usb c cable 2m",
    "gaming headset with microphone",
    "samsung galaxy s21 case",
    "27 inch 4k monitor",
    "canon pixma ink cartridge black",
    "external ssd 1tb",
    "logitech keyboard",
    "hdmi to displayport adapter",
    "laptop bag 15.6",
    "bluetooth speaker waterproof",
    "intel core i7 desktop pc",
    "sd card 64gb",
    "ergonomic office chair",
)
PARITY_REWRITES: tuple[str, ...] = ("notebook computer", "printer cartridge")
"""Each query is tagged with itself and with these two, giving 48 (query, rewrite) pairs."""


def parity_prompts() -> tuple[list[str], list[str]]:
    rewrite = [rewrite_prompt(q) for q in PARITY_QUERIES]
    tag = [tag_prompt(q, r) for q in PARITY_QUERIES for r in (q, *PARITY_REWRITES)]
    return rewrite, tag


class ParityError(QrwError):
    """The exported model does not reproduce PyTorch within the tolerances."""


@dataclasses.dataclass
class ParityReport:
    provider: str
    num_rewrite_prompts: int
    num_tag_prompts: int
    new_tokens: int
    tokenization_agreement: float
    max_logit_diff: float
    greedy_agreement: float
    tag_agreement: float
    max_tag_prob_diff: float
    tolerances: dict[str, float]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        # JSON has no infinity: an unenforced bound is written as null
        data["tolerances"] = {k: (None if math.isinf(v) else v) for k, v in self.tolerances.items()}
        return data

    def summary(self) -> str:
        return (
            f"max|logit diff| {self.max_logit_diff:.2e}, greedy agreement {self.greedy_agreement:.0%}, "
            f"tag agreement {self.tag_agreement:.0%}, max|tag p diff| {self.max_tag_prob_diff:.2e}, "
            f"tokenization {self.tokenization_agreement:.0%} ({self.num_rewrite_prompts}+{self.num_tag_prompts} prompts, {self.provider})"
        )


def torch_reference(checkpoint: Path, rewrite_prompts: list[str], tag_prompts: list[str], *, new_tokens: int, eos_ids, pad_id: int, tag_ids) -> dict[str, Any]:
    """PyTorch fp32 eager: token ids, last-position logits, greedy continuations, tag probabilities."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = pad_id
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()

    def last_logits(prompts: list[str]) -> np.ndarray:
        enc = tokenizer(prompts, padding=True, return_tensors="pt")
        position_ids = (enc.attention_mask.cumsum(-1) - 1).masked_fill(enc.attention_mask == 0, 1)
        with torch.inference_mode():
            out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, position_ids=position_ids, use_cache=False)
        return out.logits[:, -1, :].float().numpy()

    enc = tokenizer(rewrite_prompts, padding=True, return_tensors="pt")
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, num_beams=1, eos_token_id=list(eos_ids), pad_token_id=pad_id)
    with torch.inference_mode():
        generated = model.generate(**enc, generation_config=config)
    eos = set(eos_ids)
    greedy = []
    for row in generated[:, enc.input_ids.shape[1] :].tolist():
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        greedy.append(row[:cut])
    tag_logits = last_logits(tag_prompts)
    selected = tag_logits[:, list(tag_ids)]
    selected = np.exp(selected - selected.max(axis=1, keepdims=True))
    return {
        "ids": [tokenizer(p).input_ids for p in rewrite_prompts + tag_prompts],
        "rewrite_logits": last_logits(rewrite_prompts),
        "tag_logits": tag_logits,
        "greedy": greedy,
        "tag_probs": selected / selected.sum(axis=1, keepdims=True),
    }


def _read_columns(onnx_logits: np.ndarray, ref_logits: np.ndarray, tag_ids, shortlist: bool) -> float:
    """max |logit diff|: all columns, or with a shortlist head those it scores exactly (see module doc)."""
    diff = np.abs(onnx_logits - ref_logits)
    if not shortlist:
        return float(diff.max())
    top = np.argsort(-ref_logits, axis=1)[:, :16]
    columns = np.concatenate([top, np.broadcast_to(np.asarray(tag_ids, dtype=top.dtype), (len(top), len(tag_ids)))], axis=1)
    return float(np.take_along_axis(diff, columns, axis=1).max())


def check_parity(checkpoint: Path, runtime_model, tolerances: dict[str, float], *, new_tokens: int, shortlist: bool = False) -> ParityReport:
    """Compare ``runtime_model`` (a ``plugin.runtime.OnnxRewriteModel``) with PyTorch on ``checkpoint``;
    ``shortlist``: the graph has a shortlist head (``export.builder``), exact only where it is read."""
    from qrw.plugin.runtime import GenerationConfig

    rewrite, tag = parity_prompts()
    spec = runtime_model.spec
    ref = torch_reference(checkpoint, rewrite, tag, new_tokens=new_tokens, eos_ids=spec.eos_token_ids, pad_id=spec.pad_token_id, tag_ids=spec.tag_ids)

    ids = runtime_model._encode(rewrite + tag)
    tokenization = float(np.mean([a == b for a, b in zip(ids, ref["ids"])]))
    logit_diff = max(
        _read_columns(runtime_model.last_logits(rewrite), ref["rewrite_logits"], spec.tag_ids, shortlist),
        _read_columns(runtime_model.last_logits(tag), ref["tag_logits"], spec.tag_ids, shortlist),
    )
    greedy = runtime_model.generate_ids(rewrite, 1, GenerationConfig(strategy="greedy", max_new_tokens=new_tokens))
    greedy_agreement = float(np.mean([g[0] == r for g, r in zip(greedy, ref["greedy"])]))
    probs = runtime_model.tag_probs(tag)
    tag_agreement = float(np.mean(probs.argmax(axis=1) == ref["tag_probs"].argmax(axis=1)))
    tag_diff = float(np.abs(probs - ref["tag_probs"]).max())

    failures = []
    if tokenization < 1.0:
        failures.append(f"tokenization differs from transformers on {1 - tokenization:.0%} of prompts (tokenizer.json mismatch)")
    if logit_diff > tolerances["max_logit_diff"]:
        failures.append(f"max |logit diff| {logit_diff:.3g} > {tolerances['max_logit_diff']:g}")
    if greedy_agreement < tolerances["min_greedy_agreement"]:
        failures.append(f"greedy agreement {greedy_agreement:.0%} < {tolerances['min_greedy_agreement']:.0%}")
    if tag_agreement < tolerances["min_tag_agreement"]:
        failures.append(f"tag agreement {tag_agreement:.0%} < {tolerances['min_tag_agreement']:.0%}")
    if tag_diff > tolerances["max_tag_prob_diff"]:
        failures.append(f"max |tag prob diff| {tag_diff:.3g} > {tolerances['max_tag_prob_diff']:g}")
    assert len(TAGS) == probs.shape[1]
    return ParityReport(
        provider=runtime_model.provider,
        num_rewrite_prompts=len(rewrite),
        num_tag_prompts=len(tag),
        new_tokens=new_tokens,
        tokenization_agreement=tokenization,
        max_logit_diff=logit_diff,
        greedy_agreement=greedy_agreement,
        tag_agreement=tag_agreement,
        max_tag_prob_diff=tag_diff,
        tolerances=dict(tolerances),
        failures=failures,
    )
