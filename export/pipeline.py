"""``qrw-export``'s one call: checkpoint (or LoRA adapter) in, validated ONNX folder with manifest out.

Steps, each logged with its time (and a tqdm bar over the steps):

1. resolve the checkpoint; merge a peft adapter into its base; the token cap (flag, training
   targets, or the default) for the manifest
2-4. the qrw graph (``builder``: attention fused, packed projections, last-position logits; the
   default on cpu for llama/qwen2/mistral), or: export with optimum (text-generation-with-past, fp32),
   cut the LM head to the last position, ONNX Runtime transformer fusions (unless ``optimize`` is off)
5. precision: int8 quantisation, blockwise or dynamic, or int4 blockwise (cpu), or fp16 conversion
   (cuda), or keep fp32; then the in-graph top-k log-prob outputs (fp32) that decoding reads instead
   of the full logits
6. parity check against PyTorch through the serving runtime (fails past the tolerances)
7. manifest (hashes, sizes, tag ids, versions, parity figures); the folder appears atomically

The output folder is built as ``OUT.partial`` and renamed only when everything passed, so a folder
named OUT is always complete. On a parity failure ``OUT.partial`` is kept for inspection.
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from qrw.errors import ConfigError
from qrw.export import builder, graph
from qrw.export.config import ExportConfig
from qrw.export.parity import ParityError, check_parity
from qrw.plugin.prompt import PROMPT_VERSION, TAGS, tag_prompt
from qrw.plugin.config import SERVING_NAME
from qrw.plugin.runtime_manifest import CONFIG_FILES, FORMAT_VERSION, MANIFEST_NAME, MODEL_NAME, TOKENIZER_NAME, Manifest, TagId, file_sha256, model_files

log = logging.getLogger("qrw.export")

COPIED_FILES = (TOKENIZER_NAME, "config.json", "generation_config.json")


class _Steps:
    """Numbered, timed step log plus a tqdm bar over the steps."""

    def __init__(self, total: int, progress: bool) -> None:
        self.total, self.done = total, 0
        self.bar = tqdm(total=total, desc="qrw-export", unit="step", disable=not progress, leave=False)
        self.started = 0.0

    def start(self, text: str) -> None:
        self.started = time.perf_counter()
        self.bar.set_postfix_str(text)
        log.info("step %d/%d: %s", self.done + 1, self.total, text)

    def end(self, note: str = "") -> None:
        self.done += 1
        self.bar.update(1)
        log.info("  done in %.1fs%s", time.perf_counter() - self.started, f" ({note})" if note else "")

    def close(self) -> None:
        self.bar.close()


def _token_ids(checkpoint: Path) -> tuple[list[TagId], tuple[int, ...], int]:
    """Tag token ids (each must be one token, also right after the prompt), EOS ids and pad id."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    probe = tag_prompt("q", "r")
    base = tokenizer(probe).input_ids
    tags = []
    for tag in TAGS:
        ids = tokenizer.encode(tag.token, add_special_tokens=False)
        if len(ids) != 1 or tokenizer(probe + tag.token).input_ids != base + ids:
            raise ConfigError(
                f"the tokenizer of {checkpoint} does not encode tag {tag.name!r} ({tag.token!r}) as one token after the prompt (got {ids})",
                hint="the runtime reads each tag's probability from one logit; use a tokenizer that splits digits",
            )
        tags.append(TagId(tag.name, tag.token, ids[0]))
    eos: list[int] = []
    try:
        value = GenerationConfig.from_pretrained(checkpoint).eos_token_id
        eos = [value] if isinstance(value, int) else list(value or [])
    except OSError:
        pass
    if not eos and tokenizer.eos_token_id is not None:
        eos = [tokenizer.eos_token_id]
    if not eos:
        raise ConfigError(f"{checkpoint} defines no EOS token (generation_config.json or tokenizer)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return tags, tuple(eos), int(pad)


def _use_builder(cfg: ExportConfig, hf_config: dict) -> bool:
    """Whether the qrw graph builder writes this export (see ``ExportConfig.graph``)."""
    supported = hf_config.get("model_type") in builder.SUPPORTED_TYPES
    if cfg.graph == "qrw":
        if not supported:
            raise ConfigError(f"--graph qrw builds {builder.SUPPORTED_TYPES}, not model_type {hf_config.get('model_type')!r}", hint="use --graph optimum")
        return True
    if cfg.graph == "optimum":
        return False
    # auto: the CUDA path of the built graph (opset-23 Attention on the CUDA EP) has not been run on a GPU here
    return supported and cfg.target == "cpu"


def _token_cap(cfg: ExportConfig, source: Path, checkpoint: Path) -> tuple[int, str]:
    """The generated-token cap for the manifest: the flag, else the training targets, else the default."""
    from qrw.export.config import DEFAULT_MAX_NEW_TOKENS

    if cfg.max_new_tokens is not None:
        return cfg.max_new_tokens, "--max-new-tokens"
    targets = Path(cfg.targets).expanduser() if cfg.targets else None
    if targets is not None and not targets.is_file():
        raise ConfigError(f"--targets {targets} does not exist", hint="pass the trainer's rewrite_train.jsonl")
    if targets is None and source.is_dir():
        targets = graph.find_training_targets(source)
    if targets is None:
        return DEFAULT_MAX_NEW_TOKENS, "default (no training targets found)"
    return graph.token_cap_from_targets(checkpoint, targets)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for package in ("qrw", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "peft", "tokenizers"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return out


def run_export(cfg: ExportConfig, *, progress: bool = True) -> Manifest:
    """Do the whole export; return the manifest written to ``cfg.out``."""
    import onnxruntime

    from qrw.plugin.runtime import ModelSpec, OnnxRewriteModel
    from qrw.trainer.base_model import resolve_base_model

    cfg.require_paths()
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"output folder {out} exists and is not empty", hint="pass --overwrite, or choose another --out")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    steps = _Steps(7 if cfg.parity else 6, progress)
    tmp = Path(tempfile.mkdtemp(prefix="qrw-export-", dir=out.parent))
    try:
        source = Path(cfg.model).expanduser()

        steps.start(f"resolve checkpoint {cfg.model}")
        if source.is_dir() and graph.is_adapter(source):
            checkpoint, base_model = graph.merge_adapter(source, tmp / "merged", cfg.base_model)
            note = f"merged LoRA adapter into {base_model}"
        else:
            checkpoint = resolve_base_model(cfg.model)
            hf_config = json.loads((checkpoint / "config.json").read_text())
            base_model = cfg.base_model or (cfg.model if cfg.model == "smollm2" else hf_config.get("_name_or_path") or str(checkpoint))
            note = "full checkpoint"
        hf_config = json.loads((checkpoint / "config.json").read_text())
        tags, eos_ids, pad_id = _token_ids(checkpoint)
        max_new_tokens, cap_source = _token_cap(cfg, source, checkpoint)
        steps.end(f"{note}; token cap {max_new_tokens} ({cap_source})")

        heads = int(hf_config["num_attention_heads"])
        hidden = int(hf_config["hidden_size"])
        optimizations: list[str] = []
        use_builder = _use_builder(cfg, hf_config)
        shortlisted = 0  # tokens the built graph's shortlist head scores exactly (0: plain head)
        opset = builder.OPSET if use_builder else cfg.opset
        if use_builder:
            steps.start("build the decoder graph (attention fused, packed projections, last-position logits)")
            current = tmp / "built.onnx"
            shortlist = cfg.shortlist_head if cfg.target == "cpu" else 0
            built = builder.build_decoder(checkpoint, current, shortlist=shortlist, exact_ids=tuple(t.id for t in tags))
            shortlisted = built["shortlist"]
            optimizations += ["qrw-graph", "fused-attention", "packed-qkv-gate-up", "last-position-logits", "num-logits-input"]
            steps.end(f"{built['nodes']} nodes")
            steps.start("optimum export skipped (qrw graph)")
            steps.end()
            steps.start("ORT fusions skipped (the qrw graph is built fused)")
            steps.end()
        else:
            steps.start(f"optimum export (text-generation-with-past, opset {cfg.opset})")
            raw = graph.export_onnx(checkpoint, tmp / "raw", cfg.opset)
            steps.end()

            steps.start("cut LM head to the last position" if cfg.last_logits_only else "keep logits for all positions")
            current = raw
            if cfg.last_logits_only:
                cut = tmp / "cut.onnx"
                if graph.cut_lm_head_to_last_position(raw, cut):
                    current = cut
                    optimizations.append("last-position-logits")
            steps.end()

            steps.start(f"ONNX Runtime fusions for {cfg.target}" if cfg.optimize else "fusions skipped (--no-optimize)")
            if cfg.optimize:
                fused = tmp / "fused.onnx"
                optimizations += graph.optimize_graph(current, fused, model_type=hf_config.get("model_type", ""), num_heads=heads, hidden_size=hidden, use_gpu=cfg.target == "cuda")
                current = fused
            steps.end()
        logits_mode = "last" if "last-position-logits" in optimizations else "all"

        steps.start(f"precision {cfg.precision}")
        final = staging / MODEL_NAME
        if cfg.int4:
            optimizations += graph.quantize_blockwise(current, final, bits=4, block_size=cfg.int4_block_size)
        elif cfg.int8 and cfg.int8_method == "blockwise":
            optimizations += graph.quantize_int8_blockwise(current, final, block_size=cfg.int8_block_size)
        elif cfg.int8:
            optimizations += graph.quantize_int8(current, final, keep_down_proj=cfg.int8_keep_down_proj)
        elif cfg.fp16:
            optimizations += graph.convert_fp16(current, final)
        elif shortlisted:
            optimizations += graph.quantize_shortlist_head(current, final)
        else:
            shutil.move(str(current), final)
            data = current.with_name(current.name + ".data")
            if data.exists():  # external data keeps its recorded file name
                shutil.move(str(data), staging / data.name)
        if shortlisted:
            optimizations.append(f"shortlist-{shortlisted}")
        if cfg.top_k_outputs and graph.add_top_k_outputs(final, final, graph.TOP_K):
            optimizations.append(f"top-{graph.TOP_K}-logprobs")
        for name in COPIED_FILES:
            if (checkpoint / name).exists():
                shutil.copyfile(checkpoint / name, staging / name)
            elif name == TOKENIZER_NAME:
                raise ConfigError(f"{checkpoint} has no {TOKENIZER_NAME} (the runtime needs a fast tokenizer file)")
        if source.is_dir() and (source / SERVING_NAME).is_file():  # the calibrated gate travels with the model
            shutil.copyfile(source / SERVING_NAME, staging / SERVING_NAME)
        steps.end(f"{final.stat().st_size / 1e6:.0f} MB")

        spec = ModelSpec(name="parity", pad_token_id=pad_id, eos_token_ids=eos_ids, tag_ids=tuple(t.id for t in tags), target=cfg.target)
        parity: dict = {"run": False}
        if cfg.parity:
            steps.start("parity check against PyTorch")
            model = OnnxRewriteModel.from_files(staging / MODEL_NAME, staging / TOKENIZER_NAME, spec, warmup=False)
            tolerances = {k: getattr(cfg, k) for k in ("max_logit_diff", "min_greedy_agreement", "min_tag_agreement", "max_tag_prob_diff")}
            report = check_parity(checkpoint, model, tolerances, new_tokens=cfg.parity_new_tokens, shortlist=bool(shortlisted))
            parity = {"run": True, **report.to_dict()}
            if cfg.target == "cuda" and model.provider != "CUDAExecutionProvider":
                parity["note"] = "validated on CPU: no CUDA device where this export ran"
            del model
            if not report.passed:
                raise ParityError(
                    f"parity check failed for {cfg.precision}/{cfg.target}: " + "; ".join(report.failures),
                    hint=f"figures: {report.summary()}. The unvalidated export is kept in {staging}",
                )
            steps.end(report.summary())

        steps.start("manifest")
        # serving.yaml is configuration (re-calibrated in place by `qrw train calibrate`): not pinned
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file() and p.name not in CONFIG_FILES}
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            prompt_version=PROMPT_VERSION,
            model_hash=file_sha256(model_files(staging)),
            base_model=str(base_model),
            source=str(source.resolve()) if source.exists() else cfg.model,
            target=cfg.target,
            precision=cfg.precision,
            opset=opset,
            ort_version=onnxruntime.__version__,
            tags=tuple(tags),
            eos_token_ids=eos_ids,
            pad_token_id=pad_id,
            num_layers=int(hf_config["num_hidden_layers"]),
            num_kv_heads=int(hf_config.get("num_key_value_heads") or heads),
            head_dim=int(hf_config.get("head_dim") or hidden // heads),
            logits=logits_mode,
            optimizations=tuple(optimizations),
            max_new_tokens=max_new_tokens,
            max_new_tokens_source=cap_source,
            fused_ops=graph.count_ops(staging / MODEL_NAME),
            files=files,
            parity=parity,
            versions=_versions(),
            created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        (staging / MANIFEST_NAME).write_text(manifest.to_json())
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
        steps.end(f"{out}")
        return manifest
    except ParityError:
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        steps.close()
        shutil.rmtree(tmp, ignore_errors=True)
