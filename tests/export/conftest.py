"""Fixtures for the export and runtime tests: one tiny model, exported once per session.

The tiny model (``trainer.tiny``: a ~0.2M-parameter Qwen2 with a BPE trained on catalog titles) is
random, so its text is nonsense; what the tests check is that export, parity and the torch-free
runtime reproduce PyTorch exactly on it, in seconds on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest


# tiny_checkpoint and tiny_export are session fixtures of tests/conftest.py (shared with the sandbox tests).


@pytest.fixture(scope="session")
def tiny_runtime(tiny_export):
    from qrw.plugin.runtime import load_model

    return load_model(tiny_export)


@pytest.fixture(scope="session")
def tiny_torch(tiny_checkpoint):
    """(tokenizer, model) in PyTorch eager fp32, left padding: the reference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tokenizer.padding_side = "left"
    return tokenizer, AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()


