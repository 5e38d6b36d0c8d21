"""The steps that make and shape the ONNX graph: adapter merge, optimum export, LM-head cut,
ONNX Runtime transformer fusions, int8 quantisation (CPU: blockwise or dynamic) and fp16 conversion
(CUDA), and the in-graph top-k outputs decoding reads.

Each step is a function from a file (or folder) to a file, so the pipeline can log and time them
and a test can run any one alone. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from qrw.errors import ConfigError
from qrw.plugin.runtime_manifest import TOP_OUTPUTS

log = logging.getLogger("qrw.export")

# Operators that show a fusion happened; counted into the manifest.
FUSED_OPS = (
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "RotaryEmbedding",
    "QuickGelu",
    "FastGelu",
    "BiasGelu",
    "Attention",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "FusedMatMul",
    "MatMulNBits",
)

# transformers model_type -> ONNX Runtime optimizer model type. Llama-like decoders (RMSNorm, RoPE,
# SiLU MLP) go through the GPT-2 optimizer, which fuses their norms, rotary embeddings and SiLU.
ORT_MODEL_TYPES = {"llama": "gpt2", "qwen2": "gpt2", "mistral": "gpt2", "qwen3": "qwen3", "gpt2": "gpt2", "phi": "phi"}

LARGE_MODEL_BYTES = 1_800_000_000
"""Above this a protobuf cannot hold the model: weights go to an external data file."""


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def merge_adapter(adapter: Path, out: Path, base_model: str | None = None) -> tuple[Path, str]:
    """Merge a peft LoRA adapter into its base; returns (merged folder, base model spec)."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qrw.trainer.base_model import resolve_base_model

    base_spec = base_model or json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_spec:
        raise ConfigError(f"{adapter} is an adapter without base_model_name_or_path", hint="pass --base-model")
    base_dir = resolve_base_model(base_spec)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="float32")
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tokenizer_dir = adapter if (adapter / "tokenizer.json").is_file() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, str(base_spec)


def export_onnx(checkpoint: Path, out_dir: Path, opset: int) -> Path:
    """optimum export, task text-generation-with-past (KV cache as inputs and outputs), fp32."""
    from optimum.exporters.onnx import main_export

    main_export(
        str(checkpoint),
        output=str(out_dir),
        task="text-generation-with-past",
        opset=opset,
        device="cpu",
        do_validation=False,  # our parity check is stricter and runs on the final graph
    )
    path = out_dir / "model.onnx"
    if not path.is_file():
        raise RuntimeError(f"optimum wrote no model.onnx into {out_dir}")
    return path


def save_model(model, path: Path) -> Path:
    """Save an onnx ModelProto, with external data only when it would not fit a protobuf."""
    import onnx

    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    external = model.ByteSize() > LARGE_MODEL_BYTES
    onnx.save_model(model, str(path), save_as_external_data=external, location=path.name + ".data" if external else None)
    return path


def cut_lm_head_to_last_position(src: Path, dst: Path) -> bool:
    """Make ``logits`` (B, 1, V) instead of (B, S, V): slice the hidden states before the LM head.

    Generation and tagging read only the last position; computing the other positions' logits is
    S x hidden x vocab wasted work (for SmolLM2 the LM head is 28M of its 135M weights). Works with
    left padding, where the last position is always a real token. Returns False (graph unchanged)
    if the head is not a MatMul/Gemm producing ``logits``.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    head = next((n for n in graph.node if "logits" in n.output), None)
    if head is None or head.op_type not in ("MatMul", "Gemm"):
        log.warning("LM head is %s, not MatMul: keeping logits for all positions", head.op_type if head else None)
        save_model(model, dst)
        return False
    names = ("qrw_last_starts", "qrw_last_ends", "qrw_last_axes")
    graph.initializer.extend(
        [
            helper.make_tensor(names[0], TensorProto.INT64, [1], [-1]),
            helper.make_tensor(names[1], TensorProto.INT64, [1], [2**62]),
            helper.make_tensor(names[2], TensorProto.INT64, [1], [1]),
        ]
    )
    sliced = head.input[0] + "_qrw_last"
    slice_node = helper.make_node("Slice", [head.input[0], *names], [sliced], name="qrw_last_position")
    head.input[0] = sliced
    nodes = list(graph.node)
    nodes.insert(nodes.index(head), slice_node)
    del graph.node[:]
    graph.node.extend(nodes)
    for output in graph.output:
        if output.name == "logits":
            dim = output.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = 1
    onnx.checker.check_model(model) if model.ByteSize() < LARGE_MODEL_BYTES else None
    save_model(model, dst)
    return True


TOP_K = 16
"""Width of the in-graph candidate list: beam search (2 x beams candidates per row) and greedy read
these instead of the full vocabulary, so beams up to 8 never touch the (rows x vocab) logits."""


def add_top_k_outputs(src: Path, dst: Path, k: int = TOP_K) -> bool:
    """Add ``top_logprobs`` (fp32) / ``top_ids`` (B, 1, k): the k most probable next tokens and
    their log-probabilities, computed from ``logits`` inside the graph (the last export step, after
    quantisation or fp16 conversion, which would otherwise rewrite these nodes too).

    Why: a decoding step otherwise ships (rows x vocab) logits to the host and normalises and ranks
    them in numpy: for SmolLM2 (vocab 49,152) at batch 16 x 4 beams that host work was most of a
    beam step on an H100 (profiled) and a large part on CPU. ``logits`` stays an output (tagging
    and sampling read it). Returns False (graph unchanged) if there is no ``logits`` output.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    if not any(o.name == "logits" for o in graph.output) or any(o.name in TOP_OUTPUTS for o in graph.output):
        save_model(model, dst)
        return False
    k_name = "qrw_top_k"
    graph.initializer.append(helper.make_tensor(k_name, TensorProto.INT64, [1], [k]))
    graph.node.extend(
        [  # in fp32 whatever the model's precision: log-probs are summed over steps by beam search
            helper.make_node("Cast", ["logits"], ["qrw_logits_fp32"], to=TensorProto.FLOAT, name="qrw_logits_fp32"),
            helper.make_node("LogSoftmax", ["qrw_logits_fp32"], ["qrw_logprobs"], axis=-1, name="qrw_log_softmax"),
            helper.make_node("TopK", ["qrw_logprobs", k_name], list(TOP_OUTPUTS), axis=-1, largest=1, sorted=1, name="qrw_top_k"),
        ]
    )
    logits = next(o for o in graph.output if o.name == "logits")
    dims = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim]
    graph.output.extend(
        [
            helper.make_tensor_value_info(TOP_OUTPUTS[0], TensorProto.FLOAT, [dims[0], dims[1], k]),
            helper.make_tensor_value_info(TOP_OUTPUTS[1], TensorProto.INT64, [dims[0], dims[1], k]),
        ]
    )
    save_model(model, dst)
    return True


def optimize_graph(src: Path, dst: Path, *, model_type: str, num_heads: int, hidden_size: int, use_gpu: bool) -> list[str]:
    """ONNX Runtime transformer fusions (Python fusion passes, opt_level 0 so the file stays portable;
    the session applies the hardware-specific level-99 passes at load). Returns the fusions applied."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    ort_type = ORT_MODEL_TYPES.get(model_type)
    if ort_type is None:
        log.warning("no ONNX Runtime fusions known for model_type %r; graph left as exported", model_type)
        shutil.copyfile(src, dst)
        return []
    options = FusionOptions(ort_type)
    optimized = optimize_model(
        str(src),
        model_type=ort_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,
        use_gpu=use_gpu,
        optimization_options=options,
    )
    model = optimized.model
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))  # fused ops live there
    save_model(model, dst)
    return [f"ort-fusions:{ort_type}"]


def quantize_int8(src: Path, dst: Path, *, keep_down_proj: bool = True) -> list[str]:
    """Dynamic int8 quantisation of MatMul weights (per output channel, signed int8 weights, uint8
    activations quantised per tensor at run time): the CPU speed-up.

    ``keep_down_proj`` leaves the MLP down projections in fp32: their inputs (SiLU(gate) * up) carry
    the activation outliers that per-tensor activation quantisation handles worst. Measured on
    SmolLM2-135M (untrained base, 198 judged pairs): tag argmax agreement with fp32 86% with every
    MatMul quantised, 92% with down_proj kept (max |P diff| 0.31 -> 0.09).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and "down_proj" in n.name] if keep_down_proj else []
    del model

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude,
        use_external_data_format=src.stat().st_size > LARGE_MODEL_BYTES,
        # the fused graph holds contrib ops that ONNX shape inference cannot type
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return ["int8-dynamic-per-channel-matmul" + ("-except-down-proj" if exclude else "")]


def quantize_int8_blockwise(src: Path, dst: Path, *, block_size: int = 32) -> list[str]:
    """8-bit weights, symmetric, one scale per block of ``block_size`` input features
    (``MatMulNBits`` with bits=8); ``accuracy_level`` 4 makes the CPU kernel quantise activations
    per block too and multiply in int8 (VNNI/AMX where the CPU has them).

    Why over ``quantize_int8`` (dynamic): dynamic quantisation scales each activation tensor by one
    number, and the rare large activations of a small LLM then crush the rest; per-block scales keep
    them apart. Measured on SmolLM2-135M (untrained base, 789 judged pairs, 2 cores): tag argmax
    agreement with fp32 98.4 % (block 32), 97.5 % (64), 96.2 % (128) against 92.5 % for dynamic;
    decoding 1.4x faster than ORT fp32 either way; the prompt (tagging) pass 0.8x fp32 at block 32
    against 2.0x for dynamic: accuracy bought with prompt-pass speed.
    """
    return quantize_blockwise(src, dst, bits=8, block_size=block_size)


def quantize_blockwise(src: Path, dst: Path, *, bits: int, block_size: int = 32) -> list[str]:
    """``bits``-bit (4 or 8) symmetric blockwise weights in ``MatMulNBits`` (see ``quantize_int8_blockwise``).

    4 bits halve the weight bytes again, and a decoding step at one query is bound by reading the
    weights: the int4 graph is the fastest on CPU, and the one whose tags move most (its agreement
    with fp32, and its gate decisions, are measured on judged pairs by ``benchmarks/bench_runtime.py --quality``).
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    import onnx

    model = onnx.load(str(src))
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    save_model(quantizer.model.model, dst)
    return [f"int{bits}-blockwise-{block_size}-matmulnbits"]


def quantize_shortlist_head(src: Path, dst: Path, *, bits: int = 4, block_size: int = 32) -> list[str]:
    """Quantise only the shortlist head's coarse MatMul (``builder.SHORTLIST_COARSE``) to ``bits``-bit
    blockwise weights; every other weight stays fp32.

    Why 4 bits: the coarse head only picks candidates, which are then scored in fp32, so its error
    costs nothing while a true top token stays inside the shortlist, and 4 bits read half of int8's
    bytes. On the default rewriter (1,024 candidates) the greedy tokens of 1,593 prompts and their
    in-graph top 16 were those of the fp32 head (``benchmarks/shortlist_exactness.py``).
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    import onnx

    from qrw.export.builder import SHORTLIST_COARSE

    model = onnx.load(str(src))
    if not any(n.name == SHORTLIST_COARSE for n in model.graph.node):
        raise ValueError(f"{src} has no shortlist head ({SHORTLIST_COARSE}) to quantise")
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name != SHORTLIST_COARSE]
    # nodes_to_include is not honoured by ORT 1.31's quantizer (it quantised every MatMul): exclude the rest instead
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True, accuracy_level=4, nodes_to_exclude=others)
    quantizer.process()
    save_model(quantizer.model.model, dst)
    return [f"shortlist-head-int{bits}"]


def convert_fp16(src: Path, dst: Path) -> list[str]:
    """Weights, activations and KV cache in float16 (inputs ids/mask/positions stay int64)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    model = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True)
    save_model(model, dst)
    return ["fp16"]


def count_ops(path: Path) -> dict[str, int]:
    """How many of each fused/quantised operator the final graph holds."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = Counter(n.op_type for n in model.graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts.get(op)}


def token_cap_from_targets(tokenizer_dir: Path, targets: Path, *, quantile: float = 0.99) -> tuple[int, str]:
    """(cap, description): the ``quantile`` of the token counts of the rewrite targets in ``targets``
    (the trainer's rewrite JSONL, field ``completion``), plus one for EOS.

    Why a quantile and not the maximum: one long list in the training data would let every runaway
    generation run that long; the runtime stops earlier anyway at EOS, at a newline, or once it has
    the rewrites it asked for.
    """
    import json

    import numpy as np
    from transformers import AutoTokenizer

    completions = []
    with open(targets, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if isinstance(record.get("completion"), str):
                    completions.append(record["completion"])
    if not completions:
        raise ConfigError(f"{targets} holds no records with a 'completion' (expected the trainer's rewrite_train.jsonl)")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lengths = np.array([len(tokenizer.encode(text, add_special_tokens=False)) for text in completions])
    cap = int(np.ceil(np.quantile(lengths, quantile))) + 1
    note = f"p{quantile * 100:g} of {len(lengths)} training targets in {targets.name} (+1 EOS; max {int(lengths.max()) + 1})"
    return max(cap, 2), note


def find_training_targets(source: Path) -> Path | None:
    """The rewrite training file named by the model folder's ``training_card.json``, if it still exists."""
    import json

    card = source / "training_card.json"
    if not card.is_file():
        return None
    try:
        data_dir = json.loads(card.read_text()).get("config", {}).get("data_dir")
    except (OSError, ValueError):
        return None
    if not data_dir:
        return None
    for base in (Path.cwd(), source, source.parent):
        candidate = (base / data_dir / "rewrite_train.jsonl").resolve()
        if candidate.is_file():
            return candidate
    return None
