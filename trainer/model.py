"""``TorchRewriteModel``: a PyTorch checkpoint behind ``qrw.plugin.model.RewriteModel``.

Why: evaluation of training stages and the export parity check need the model exactly as the
runtime will use it (same prompts from ``plugin.prompt``, same parsing, tag probabilities as the
softmax over the four tag-token ids at the last prompt position), but without ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qrw.errors import ConfigError
from qrw.plugin.prompt import TAGS, normalize_text, parse_rewrites, rewrite_prompt, tag_prompt


def tag_token_ids(tokenizer) -> list[int]:
    """The id of each tag's token (in ``TAGS`` order); each tag must be exactly one token after ``Tag:``."""
    ids = []
    for tag in TAGS:
        alone = tokenizer.encode(tag.token, add_special_tokens=False)
        joined = tokenizer.encode(tag_prompt("q", "r") + tag.token, add_special_tokens=False)
        if len(alone) != 1 or joined[-1] != alone[0]:
            raise ConfigError(
                f"tag {tag.name!r} ({tag.token!r}) is not a single token for this tokenizer",
                hint="the prompt contract needs each tag digit to tokenize alone; choose a tokenizer that splits digits",
            )
        ids.append(alone[0])
    return ids


def load_causal_lm(path: str | Path, *, device: str | None = None):
    """(model, tokenizer) from a full checkpoint or a LoRA adapter folder (merged on load), in eval mode."""
    import torch

    path = Path(path)
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise ConfigError(f"model not found: {path} holds no config.json or adapter_config.json")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # one loader for checkpoints and adapters: it resolves an adapter's base ('smollm2', offline)
    # instead of asking a model hub for it
    from qrw.trainer.stage import load_base

    model, tokenizer, _ = load_base(str(path))
    return model.to(device).eval(), tokenizer


class TorchRewriteModel:
    """Generates rewrites (sampling or beam search) and tag probabilities with a transformers model."""

    def __init__(self, path: str | Path, *, model=None, tokenizer=None, strategy: str = "sample",
                 temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 24, batch_size: int = 32,
                 seed: int = 0, device: str | None = None) -> None:
        if strategy not in ("sample", "beam", "greedy"):
            raise ConfigError(f"strategy {strategy!r}: choose sample, beam or greedy")
        if model is None:
            model, tokenizer = load_causal_lm(path, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.name = Path(path).name if path else "torch"
        self.strategy = strategy
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.seed = seed
        self.tag_ids = tag_token_ids(tokenizer)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _encode(self, prompts: Sequence[str]):
        self.tokenizer.padding_side = "left"
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def generate_raw(self, queries: Sequence[str], num_rewrites: int) -> list[list[str | None]]:
        """For each query, ``num_rewrites`` parsed outputs (None where nothing usable came out), not deduplicated."""
        import torch

        out: list[list[str | None]] = []
        n = max(num_rewrites, 1)
        for start in range(0, len(queries), self.batch_size):
            batch = queries[start : start + self.batch_size]
            enc = self._encode([rewrite_prompt(q) for q in batch])
            kwargs = dict(max_new_tokens=self.max_new_tokens, num_return_sequences=n,
                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
            if self.strategy == "sample":
                kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
            elif self.strategy == "beam":
                kwargs.update(do_sample=False, num_beams=max(n, 2))
            else:
                kwargs.update(do_sample=False, num_return_sequences=1)
            torch.manual_seed(self.seed + start)
            with torch.inference_mode():
                generated = self.model.generate(**enc, **kwargs)
            texts = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            per = 1 if self.strategy == "greedy" else n
            for i in range(len(batch)):  # each decoded sequence is a list of rewrites: flatten, keep order
                out.append([r for t in texts[i * per : (i + 1) * per] for r in (parse_rewrites(t) or [None])])
        return out

    def generate(self, queries: Sequence[str], num_rewrites: int) -> list[list[str]]:
        """Up to ``num_rewrites`` distinct parsed rewrites per query (empty outputs dropped)."""
        result = []
        for parsed in self.generate_raw(queries, num_rewrites):
            seen: dict[str, str] = {}
            for text in parsed:
                if text is not None:
                    seen.setdefault(normalize_text(text).casefold(), text)
            result.append(list(seen.values())[:num_rewrites])
        return result

    def tag_probabilities(self, pairs: Sequence[tuple[str, str]]):
        """A ``(len(pairs), len(TAGS))`` tensor of tag probabilities (softmax over the tag ids at the last position)."""
        import torch

        rows = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            enc = self._encode([tag_prompt(q, r) for q, r in batch])
            with torch.inference_mode():
                logits = self.model(**enc).logits[:, -1, :]
            rows.append(torch.softmax(logits[:, self.tag_ids].float(), dim=-1).cpu())
        if not rows:
            return torch.zeros((0, len(TAGS)))
        return torch.cat(rows)

    def tag(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        probs = self.tag_probabilities(pairs)
        return [{tag.name: float(p) for tag, p in zip(TAGS, row)} for row in probs.tolist()]
