"""The manifest of an exported model folder: what ``qrw-export`` writes and the runtime checks at load.

Why a manifest: an ONNX file alone does not say which prompt template it was trained for, which
token ids are the relevance tags, or whether it was validated against PyTorch. A model exported for
another ``PROMPT_VERSION`` would read tags from the wrong logits silently; the runtime refuses it
here, with a message that says what to do.

Folder layout (``qrw-export`` writes it, ``qrw.plugin.runtime.load_model`` reads it)::

    manifest.json     this file's data (format_version, prompt_version, tags, precision, parity, ...)
    model.onnx        the decoder with KV cache (inputs input_ids, attention_mask, position_ids,
                      past_key_values.{i}.key/value; outputs logits, present.{i}.key/value)
    model.onnx.data   external weights, only for models over ~1.8 GB
    tokenizer.json    the `tokenizers` file; the runtime never imports transformers

Stays free of onnxruntime and numpy, so the exporter and tools can read manifests cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from qrw.plugin.errors import ModelError
from qrw.plugin.prompt import PROMPT_VERSION, TAGS

MANIFEST_NAME = "manifest.json"
TOP_OUTPUTS = ("top_logprobs", "top_ids")
"""Optional graph outputs (B, 1, k) that qrw-export adds: the k most probable next tokens and their
log-probabilities, so decoding reads k values per row instead of the whole vocabulary."""
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
FORMAT_VERSION = 1
"""Bumped when the folder layout or the model's input/output contract changes."""

TARGETS = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8", "int4")


class ModelFolderError(ModelError):
    """An exported model folder is missing, incomplete, corrupt or built for another contract."""


@dataclasses.dataclass(frozen=True)
class TagId:
    name: str
    token: str
    id: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to trust and drive an exported model."""

    format_version: int
    prompt_version: str
    model_hash: str
    """sha256 of model.onnx (and its external data file, if any), hex."""
    base_model: str
    source: str
    """The checkpoint (or adapter) folder that was exported."""
    target: str
    precision: str
    opset: int
    ort_version: str
    tags: tuple[TagId, ...]
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    logits: str = "last"
    """"last": the graph returns logits for the last position only (B, 1, V); "all": (B, S, V)."""
    optimizations: tuple[str, ...] = ()
    max_new_tokens: int | None = None
    """Cap on the tokens of one generated rewrite list (from the training targets); None: the runtime's default."""
    max_new_tokens_source: str = ""
    fused_ops: dict[str, int] = dataclasses.field(default_factory=dict)
    files: dict[str, int] = dataclasses.field(default_factory=dict)
    """File name -> size in bytes; the runtime checks presence and size (a cheap corruption check)."""
    parity: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    created_at: str = ""

    @property
    def tag_ids(self) -> dict[str, int]:
        return {t.name: t.id for t in self.tags}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = MANIFEST_NAME) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise ModelFolderError(f"{where} lacks the fields {missing}", hint="re-export the model with qrw-export")
        unknown = sorted(data.keys() - names)
        if unknown:
            raise ModelFolderError(f"{where} has unknown fields {unknown}: written by a newer qrw-export?", hint="upgrade qrw or re-export")
        try:
            kwargs = dict(data)
            kwargs["tags"] = tuple(TagId(**t) for t in data["tags"])
            kwargs["eos_token_ids"] = tuple(int(i) for i in data["eos_token_ids"])
            kwargs["optimizations"] = tuple(data.get("optimizations", ()))
            return cls(**kwargs)
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelFolderError(f"{where} is malformed: {exc}", hint="re-export the model with qrw-export") from exc


def file_sha256(paths: list[Path], chunk: int = 1 << 22) -> str:
    """One sha256 over the files' bytes in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


CONFIG_FILES = frozenset({"serving.yaml", "calibration.json"})
"""Files an export may carry that are configuration, not model: ``qrw train calibrate`` rewrites
them in place, so the manifest neither pins their size nor requires them."""


def model_files(folder: Path) -> list[Path]:
    """model.onnx and its external data file, if present (the files the model hash covers)."""
    paths = [folder / MODEL_NAME]
    data = folder / (MODEL_NAME + ".data")
    if data.exists():
        paths.append(data)
    return paths


def read_manifest(folder: str | Path, *, verify_hash: bool = False) -> Manifest:
    """Read and check ``folder/manifest.json``; raise ``ModelFolderError`` naming what is wrong.

    Checks: the folder and manifest exist; the JSON parses; the format and prompt versions are the
    ones this code speaks; the tags are exactly ``prompt.TAGS``; every listed file is present with
    its recorded size; with ``verify_hash``, the model's sha256 (costs ~1 s per 500 MB).
    """
    folder = Path(folder)
    hint = "export a model with: qrw-export --model CHECKPOINT --out FOLDER"
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}", hint=hint)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ModelFolderError(f"{folder} is not an exported model folder: {MANIFEST_NAME} is missing", hint=hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path} is corrupt (not valid JSON: {exc})", hint="re-export the model") from exc
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} is corrupt (not a JSON object)", hint="re-export the model")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"{path} has format_version {data.get('format_version')!r}; this runtime reads {FORMAT_VERSION}",
            hint="re-export the model with the qrw-export of this version",
        )
    if data.get("prompt_version") != PROMPT_VERSION:
        raise ModelFolderError(
            f"{folder} was exported for prompt template {data.get('prompt_version')!r}, but this runtime "
            f"builds prompts as {PROMPT_VERSION!r}; its tags and rewrites would be read wrongly",
            hint="retrain/re-export the model with this qrw version, or run the qrw version it was built for",
        )
    manifest = Manifest.from_dict(data, where=str(path))
    expected = [(t.name, t.token) for t in TAGS]
    if [(t.name, t.token) for t in manifest.tags] != expected:
        raise ModelFolderError(f"{path} lists tags {[(t.name, t.token) for t in manifest.tags]}, expected {expected}", hint="re-export")
    if manifest.target not in TARGETS or manifest.precision not in PRECISIONS:
        raise ModelFolderError(f"{path}: unknown target/precision {manifest.target}/{manifest.precision}", hint="re-export")
    for name in (MODEL_NAME, TOKENIZER_NAME, *manifest.files):
        if name in CONFIG_FILES:  # replaceable configuration (older exports listed it)
            continue
        file = folder / name
        if not file.is_file():
            raise ModelFolderError(f"{folder} is incomplete: {name} is missing", hint="copy the whole folder, or re-export")
        size = manifest.files.get(name)
        if size is not None and file.stat().st_size != size:
            raise ModelFolderError(
                f"{file} is corrupt: {file.stat().st_size} bytes, the manifest says {size}",
                hint="copy the folder again, or re-export",
            )
    if verify_hash:
        verify_model_hash(folder, manifest)
    return manifest


def verify_model_hash(folder: Path, manifest: Manifest) -> None:
    """Raise unless the model files hash to the manifest's ``model_hash``.

    Why at every serving load (``engine.load_model`` asks for it): a model file damaged in place,
    same size, loads and answers with garbage rewrites; the size check cannot see that.
    """
    actual = file_sha256(model_files(folder))
    if actual != manifest.model_hash:
        raise ModelFolderError(
            f"{folder / MODEL_NAME} does not match the manifest's model_hash (sha256 {actual[:12]}…, "
            f"manifest {manifest.model_hash[:12]}…): the file is corrupt or was replaced",
            hint="copy the folder again, or re-export",
        )
