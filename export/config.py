"""``qrw-export`` configuration: one dataclass holding every default, a YAML file, then CLI flags.

Precedence (lowest to highest): the defaults below, ``--config FILE`` (the whole file, or its
``export:`` section; unknown keys fail, naming the valid ones), then flags given on the command line.

Parity tolerances (checked against PyTorch fp32 on ``parity.PARITY_QUERIES``; the export fails past
them). Defaults per precision, each overridable:

=========  ================  ================  ===============  ================
precision  max |logit diff|  greedy agreement  tag argmax agr.  max |tag p diff|
=========  ================  ================  ===============  ================
fp32       1e-3              1.0 (exact)       1.0              1e-3
fp16       0.5               0.75              0.9              0.05
int8       no bound (info)   0.0 (info)        0.85             0.15
int4       no bound (info)   0.0 (info)        0.85             0.15
=========  ================  ================  ===============  ================

Why these: fp32 ONNX differs from PyTorch only by kernel summation order (seen: ~1e-5 on logits of
magnitude ~20), so any real difference is a bug. fp16 and int8 change the numbers by design; what
must survive is the tag decision (the gate reads it) and, for fp16, mostly the same greedy text.
int8 greedy text drifts after a few tokens on an untrained model (ties between near-equal logits),
so its logit and greedy figures are reported, not enforced; its tag agreement is enforced. The
>=98% tag agreement claimed for int8 on SmolLM2 is measured on judged pairs by the benchmark, which
has far more pairs than the 32-pair parity set.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


from qrw.errors import ConfigError

TARGETS = ("cpu", "cuda")

INT8_METHODS = ("blockwise", "dynamic")
_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_logit_diff": 1e-3, "min_greedy_agreement": 1.0, "min_tag_agreement": 1.0, "max_tag_prob_diff": 1e-3},
    "fp16": {"max_logit_diff": 0.5, "min_greedy_agreement": 0.75, "min_tag_agreement": 0.9, "max_tag_prob_diff": 0.05},
    "int8": {"max_logit_diff": float("inf"), "min_greedy_agreement": 0.0, "min_tag_agreement": 0.85, "max_tag_prob_diff": 0.15},
    "int4": {"max_logit_diff": float("inf"), "min_greedy_agreement": 0.0, "min_tag_agreement": 0.85, "max_tag_prob_diff": 0.15},
}
GRAPHS = ("auto", "qrw", "optimum")
DEFAULT_MAX_NEW_TOKENS = 24
"""Token cap written to the manifest when no training targets are found (a list of three or four
short product phrases with their separators is 15-25 SmolLM2 tokens)."""


@dataclasses.dataclass
class ExportConfig:
    """Everything ``qrw-export`` does, with its default. ``precision`` is derived, not set."""

    # -- what to export ---------------------------------------------------------------------------
    model: str = dataclasses.field(default="", metadata={"help": "checkpoint folder (HF causal LM) or peft adapter folder (adapter_config.json); 'smollm2' for the packaged base"})
    base_model: str | None = dataclasses.field(default=None, metadata={"help": "base model for an adapter (default: the adapter's base_model_name_or_path)"})
    out: str = dataclasses.field(default="", metadata={"help": "output folder (model.onnx, tokenizer.json, manifest.json)"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace an existing output folder"})

    # -- how ---------------------------------------------------------------------------------------
    target: str = dataclasses.field(default="cpu", metadata={"help": "cpu or cuda: which execution provider the graph is optimised for"})
    fp16: bool = dataclasses.field(default=False, metadata={"help": "convert weights and KV cache to float16 (target cuda only)"})
    int8: bool = dataclasses.field(default=False, metadata={"help": "int8 quantisation of MatMul weights (target cpu only); how: int8_method"})
    int8_method: str = dataclasses.field(default="blockwise", metadata={"help": "blockwise: 8-bit weights in blocks of int8_block_size (MatMulNBits, int8 compute on activations quantised per block; tags closest to fp32); dynamic: per-channel weights, activations per tensor (MatMulInteger; faster prompt pass, tags further from fp32)"})
    int8_block_size: int = dataclasses.field(default=32, metadata={"help": "with int8_method blockwise: weights (and activations) per block of this many input features"})
    int4: bool = dataclasses.field(default=False, metadata={"help": "4-bit blockwise weights (MatMulNBits, blocks of int4_block_size, int8 compute on activations quantised per block; target cpu only)"})
    int4_block_size: int = dataclasses.field(default=32, metadata={"help": "with int4: weights (and activations) per block of this many input features"})
    int8_keep_down_proj: bool = dataclasses.field(default=True, metadata={"help": "with int8_method dynamic, keep the MLP down projections fp32 (activation outliers)"})
    graph: str = dataclasses.field(default="auto", metadata={"help": "qrw: build the decoder directly from the checkpoint (attention fused, packed projections; llama/qwen2/mistral); optimum: optimum's export plus ONNX Runtime's fusions; auto: qrw for target cpu when the architecture is supported, else optimum"})
    optimize: bool = dataclasses.field(default=True, metadata={"help": "run ONNX Runtime's transformer fusions on an optimum graph (layer norm, rotary, activations)"})
    opset: int = dataclasses.field(default=18, metadata={"help": "ONNX opset of the export"})
    last_logits_only: bool = dataclasses.field(default=True, metadata={"help": "cut the LM head to the last position (the runtime never needs more)"})
    top_k_outputs: bool = dataclasses.field(default=True, metadata={"help": "add in-graph top-16 log-prob outputs, so beam and greedy decoding never copy full-vocabulary logits to the host"})
    shortlist_head: int = dataclasses.field(default=1024, metadata={"help": "qrw graph on target cpu: a 4-bit copy of the LM head shortlists this many tokens and only they (and the tag tokens) are scored in fp32 (exact greedy tokens, top 16 and tags; 0: the plain fp32 head)"})

    # -- decoding contract written to the manifest ----------------------------------------------------
    max_new_tokens: int | None = dataclasses.field(default=None, metadata={"help": "token cap of one generated rewrite list; default: from the training targets (targets), else 24"})
    targets: str | None = dataclasses.field(default=None, metadata={"help": "the trainer's rewrite JSONL (rewrite_train.jsonl): the cap is the 99th percentile of its completions' token counts plus EOS; default: found through the model folder's training_card.json"})

    # -- parity check ------------------------------------------------------------------------------
    parity: bool = dataclasses.field(default=True, metadata={"help": "validate against PyTorch (fails the export past the tolerances)"})
    parity_new_tokens: int = dataclasses.field(default=12, metadata={"help": "greedy tokens compared per parity prompt"})
    max_logit_diff: float | None = dataclasses.field(default=None, metadata={"help": "tolerance; default per precision (see module doc)"})
    min_greedy_agreement: float | None = dataclasses.field(default=None, metadata={"help": "tolerance; default per precision"})
    min_tag_agreement: float | None = dataclasses.field(default=None, metadata={"help": "tolerance; default per precision"})
    max_tag_prob_diff: float | None = dataclasses.field(default=None, metadata={"help": "tolerance; default per precision"})

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target={self.target!r}: choose one of {TARGETS}")
        if sum((self.fp16, self.int8, self.int4)) > 1:
            raise ConfigError("--fp16, --int8 and --int4 exclude each other", hint="fp16 is for --target cuda, int8/int4 for --target cpu")
        if self.int4 and self.target != "cpu":
            raise ConfigError("--int4 needs --target cpu (MatMulNBits with int8 compute is the CPU kernel)", hint="use --fp16 for CUDA")
        if self.int4_block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"int4_block_size={self.int4_block_size}: must be 16, 32, 64, 128 or 256")
        if self.graph not in GRAPHS:
            raise ConfigError(f"graph={self.graph!r}: choose one of {GRAPHS}")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= 256:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: must be within 1..256")
        if self.fp16 and self.target != "cuda":
            raise ConfigError("--fp16 needs --target cuda (CPU kernels for fp16 are slower than fp32)", hint="use --int8 for CPU")
        if self.int8 and self.target != "cpu":
            raise ConfigError("--int8 needs --target cpu (dynamic int8 MatMul kernels are CPU kernels)", hint="use --fp16 for CUDA")
        if self.int8_method not in INT8_METHODS:
            raise ConfigError(f"int8_method={self.int8_method!r}: choose one of {INT8_METHODS}")
        if self.int8_block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"int8_block_size={self.int8_block_size}: must be 16, 32, 64, 128 or 256")
        if not 11 <= self.opset <= 23:
            raise ConfigError(f"opset={self.opset}: must be within 11..23 (18 is tested)")
        if self.shortlist_head and self.shortlist_head < 16:
            raise ConfigError(f"shortlist_head={self.shortlist_head}: 0 (off) or at least 16 (the in-graph top 16 is read from it)")
        if self.parity_new_tokens < 1:
            raise ConfigError(f"parity_new_tokens={self.parity_new_tokens}: must be at least 1")
        for name, default in _TOLERANCES[self.precision].items():
            if getattr(self, name) is None:
                setattr(self, name, default)

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "int8" if self.int8 else "int4" if self.int4 else "fp32"

    def require_paths(self) -> None:
        if not self.model:
            raise ConfigError("no model given", hint="--model CHECKPOINT_FOLDER (or 'smollm2')")
        if not self.out:
            raise ConfigError("no output folder given", hint="--out FOLDER")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ExportConfig))


def load_config(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ExportConfig:
    """Defaults, then the YAML file (flat, or under ``export:``), then non-None ``overrides``."""
    data: dict[str, Any] = {}
    if config_file is not None:
        from qrw.settings import read_yaml_mapping

        path = Path(config_file)
        loaded = read_yaml_mapping(path)
        if isinstance(loaded.get("export"), dict):
            loaded = loaded["export"]
        unknown = sorted(set(loaded) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(f"config file {path}: unknown keys {unknown}", hint=f"valid keys: {', '.join(FIELD_NAMES)}")
        data.update(loaded)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"unknown export settings {unknown}")
    return ExportConfig(**data)
