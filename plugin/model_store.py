"""One model path: whatever names a rewriter becomes an exported ONNX folder the runtime can load.

Why: a user holds one of four things and should not have to know which the runtime wants:

* nothing, or ``"default"``: the project's default rewriter (the LoRA adapter committed in
  ``models/default-rewriter``; ``$QRW_DEFAULT_REWRITER`` names another folder instead);
* an exported folder (``manifest.json``), loaded as it is;
* an adapter or checkpoint folder (``adapter_config.json`` / ``config.json``), exported for CPU (fp32,
  fused kernels) on first use into ``$QRW_CACHE_DIR/models/`` under a name keyed by a hash of the
  folder's files and the prompt contract, so a second use (by any command) loads the cached export;
* a rewrite table (``.jsonl``, ``qrw.plugin.table``), served as it is.

Exporting needs the ``export`` extra (torch, optimum) and runs ``qrw-export`` in a child process,
so this module, and serving, never import torch. ``qrw model list`` and ``qrw model path`` show
the cache.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qrw.errors import ConfigError
from qrw.plugin.prompt import PROMPT_VERSION
from qrw.plugin.runtime_manifest import MANIFEST_NAME

DEFAULT_MODEL = "default"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADAPTER = REPO_ROOT / "models" / "default-rewriter"
DEFAULT_ENV = "QRW_DEFAULT_REWRITER"
EXPORT_FLAVOUR = "cpu-fp32-top16-shortlist1024"
"""What the cached exports are: CPU, fp32 with fused kernels, in-graph top-16 outputs and the shortlist
head (1,024 tokens picked by a 4-bit copy of the LM head, scored in fp32: ``export.builder``). fp32
because int8 changes many of the default adapter's tags (see the README's export section). A change
here re-exports cached models on their next use."""
SOURCE_NAME = "qrw-source.json"
"""Written beside an export made here: which folder it came from, and its content hash."""
KEEP_EXPORTS = 2
"""Cached exports kept per source folder: a new export removes older ones of the same folder beyond
this (each is about 0.6 GB, and every change to an adapter or to ``EXPORT_FLAVOUR`` makes a new one)."""


def cache_root() -> Path:
    """``$QRW_CACHE_DIR/models`` (default ``~/.cache/qrw/models``)."""
    return Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "models"


DOCUMENTATION_ONLY = ("training_card.md", "*.png")
"""Files of a model folder that no export reads (the card's prose, its plots): left out of the
content hash, so that editing a training card does not trigger a re-export. ``training_card.json``
stays in: the exporter reads the token cap's source from it."""


def _exported_inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(p.match(pattern) for pattern in DOCUMENTATION_ONLY))


def content_hash(folder: Path) -> str:
    """A hash of the relative path and bytes of every file an export reads: a changed adapter (or a
    re-calibrated ``serving.yaml``, which travels into the export) gets a new export."""
    digest = hashlib.sha256()
    for path in _exported_inputs(folder):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def is_exported(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def is_checkpoint(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() or (path / "config.json").is_file()


def is_table(path: Path) -> bool:
    return path.is_file() and path.suffix == ".jsonl"


def export_dir(checkpoint: Path) -> Path:
    """Where ``checkpoint``'s export lives in the cache (it may not exist yet)."""
    return cache_root() / f"{checkpoint.resolve().name}-{content_hash(checkpoint)}-{PROMPT_VERSION}-{EXPORT_FLAVOUR}"


def default_source() -> Path:
    """The folder the default model comes from: ``$QRW_DEFAULT_REWRITER``, else the committed adapter."""
    if os.environ.get(DEFAULT_ENV):
        return Path(os.environ[DEFAULT_ENV])
    if not is_checkpoint(DEFAULT_ADAPTER):
        raise ConfigError(
            f"no default rewriter is committed at {DEFAULT_ADAPTER}",
            hint=f"train one (README, 'Training'), or set {DEFAULT_ENV} to an exported folder",
        )
    return DEFAULT_ADAPTER


def resolve(model: str | os.PathLike | None = DEFAULT_MODEL, *, export: bool = True) -> Path:
    """The loadable path for ``model``: an exported folder or a ``.jsonl`` table.

    A checkpoint's export is made on first use when ``export`` is true; otherwise its (perhaps
    missing) cache path is returned. Raises ``ConfigError`` naming what was given and what is accepted.
    """
    if model is None or str(model) == DEFAULT_MODEL:
        path = default_source()
    else:
        path = Path(model).expanduser()
        if not path.exists() and len(path.parts) == 1 and (cache_root() / path.name).is_dir():
            path = cache_root() / path.name  # a name from `qrw model list`
    if is_table(path) or is_exported(path):
        return path
    if path.is_dir() and is_checkpoint(path):
        target = export_dir(path)
        return ensure_exported(path, target) if export else target
    if not path.exists():
        raise ConfigError(f"model not found: {path}",
                          hint="pass 'default', an exported folder, an adapter or checkpoint folder, or a .jsonl table "
                               "(`qrw model list` shows the cached exports)")
    raise ConfigError(f"{path} is not a model: no manifest.json (export), adapter_config.json or config.json "
                      "(checkpoint), and not a .jsonl rewrite table")


def shipped_serving(model: str | os.PathLike | None) -> Path | None:
    """The ``serving.yaml`` (calibrated gate, trigger and merge settings) of the folder ``model``
    resolves to, if it has one; None for no model or one that does not resolve (its loader says why)."""
    if not model:
        return None
    from qrw.errors import QrwError
    from qrw.plugin.config import SERVING_NAME

    try:
        folder = resolve(model)
    except QrwError:
        return None
    return folder / SERVING_NAME if folder.is_dir() and (folder / SERVING_NAME).is_file() else None


def ensure_exported(checkpoint: Path, target: Path) -> Path:
    """Export ``checkpoint`` into ``target`` once (a lock keeps two processes from exporting it twice)."""
    if is_exported(target):
        return target
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("torch") is None:
        raise ConfigError(
            f"{checkpoint} is a checkpoint; exporting it needs the export extra (torch, optimum)",
            hint="install '.[export,train]', or export it elsewhere with qrw-export and pass the exported folder",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_exported(target):
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            command = [sys.executable, "-m", "qrw.export.cli", "--model", str(checkpoint), "--out", str(staging / "out"),
                       "--target", "cpu"]
            print(f"exporting {checkpoint} once (cached as {target.name}; a few minutes on 2 cores) …", file=sys.stderr, flush=True)
            # the exporter's report goes to stderr: stdout belongs to the caller (`qrw model path` prints a path)
            result = subprocess.run(command, stdout=sys.stderr)
            if result.returncode != 0 or not is_exported(staging / "out"):
                raise ConfigError(f"exporting {checkpoint} failed (qrw-export exit {result.returncode})")
            (staging / "out" / SOURCE_NAME).write_text(json.dumps(
                {"source": str(checkpoint.resolve()), "content_hash": content_hash(checkpoint), "flavour": EXPORT_FLAVOUR}))
            shutil.rmtree(target, ignore_errors=True)
            (staging / "out").replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for old in prune_superseded(target):
            print(f"removed the superseded export {old.name}", file=sys.stderr, flush=True)
    return target


def prune_superseded(kept: Path, keep: int = KEEP_EXPORTS) -> list[Path]:
    """Remove cached exports made here from the same source folder as ``kept``, all but the ``keep``
    newest (``kept`` always stays); returns what was removed. Exports without ``qrw-source.json``
    (copied in by hand) and those of other folders are left alone."""
    def source_of(folder: Path) -> str | None:
        try:
            return json.loads((folder / SOURCE_NAME).read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            return None

    source = source_of(kept)
    if source is None:
        return []
    same = [f for f in kept.parent.iterdir() if f.is_dir() and not f.name.startswith(".") and source_of(f) == source]
    same.sort(key=lambda f: (f == kept, f.stat().st_mtime), reverse=True)
    removed = same[max(keep, 1):]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


@dataclasses.dataclass(frozen=True)
class CachedModel:
    name: str
    path: Path
    size_mb: float
    source: str
    target: str
    precision: str
    prompt_version: str


def list_cached() -> list[CachedModel]:
    """Every exported folder in the cache, with where it came from and what it was built for."""
    root = cache_root()
    models = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir() and is_exported(p)) if root.is_dir() else []:
        try:
            manifest = json.loads((folder / MANIFEST_NAME).read_text())
        except (OSError, ValueError):
            manifest = {}
        try:
            source = json.loads((folder / SOURCE_NAME).read_text()).get("source", "")
        except (OSError, ValueError):
            source = ""
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        models.append(CachedModel(folder.name, folder, round(size, 1), source, str(manifest.get("target", "?")),
                                  str(manifest.get("precision", "?")), str(manifest.get("prompt_version", "?"))))
    return models
