"""Build the decoder graph straight from a Hugging Face checkpoint, with attention fused.

Why our own builder instead of optimum's export plus ONNX Runtime's fusions: optimum traces the
PyTorch code into ~5,100 nodes for SmolLM2 (1,800 constants, 800 unsqueezes, shape arithmetic and
an unfused grouped-query attention that ORT's fusion passes do not recognise). At one query on two
CPU cores a decoding step is memory-bound and short, and the ~100 small kernels per layer cost as
much as a third of it (profiled). This builder writes the graph a Llama-family decoder needs, about
15 nodes per layer:

* ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (RMSNorm, residual adds fused)
* one packed ``MatMul`` for q, k and v (plus ``Add`` for Qwen2's biases) and one for gate and up:
  fewer, larger matrix products, which is also what ``MatMulNBits`` quantises best
* ``RotaryEmbedding`` (com.microsoft) on q and k with the checkpoint's own cos/sin tables
* ``Attention`` (ONNX opset 23): grouped-query attention with the KV cache as input and output and an
  additive mask built once per run from ``attention_mask`` (causal, padding, and holes anywhere, so
  the runtime may left-pad prompts and splice a shared prefix's KV cache in front of several suffixes)
* the LM head on the last ``num_logits`` positions (an int64 [1] input; 1 for a plain step), which
  lets the runtime verify drafted tokens in one pass
* optionally a *shortlist head* (``shortlist`` > 0): a coarse copy of the LM head (quantised to 4 bits
  by the export, ``graph.quantize_shortlist_head``) picks the ``shortlist`` most likely tokens, and only
  those, plus the tag tokens, are scored exactly in fp32 from the head's own rows. Why: at one query on
  two cores a step is bound by reading weights, and the fp32 head (vocabulary x hidden, 113 MB for
  SmolLM2) is a fifth of them; what the runtime reads (the greedy token, the in-graph top 16, the tag
  logits) stays the fp32 value. The other logits are the coarse head's: ``logits`` is exact only at
  the shortlist and the tags (sampling over the full distribution reads an approximate tail).

Inputs and outputs are those of the optimum export (``input_ids``, ``attention_mask``,
``position_ids``, ``past_key_values.{i}.key|value`` -> ``logits``, ``present.{i}.key|value``), so the
runtime and every later export step (quantisation, fp16, top-k) treat both graphs alike, and the
export's parity check against PyTorch validates this one the same way.

Supported: ``model_type`` llama, qwen2, mistral (RMSNorm, SiLU MLP, rotary embeddings without
sliding windows or length-dependent scaling). Anything else raises ``UnsupportedModel``; the export
then falls back to optimum.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qrw.errors import ConfigError

log = logging.getLogger("qrw.export")

SUPPORTED_TYPES = ("llama", "qwen2", "mistral")
OPSET = 23
"""ONNX opset of the built graph: ``Attention`` with grouped-query heads and a KV cache is opset 23."""
IR_VERSION = 11
"""The IR version that carries opset 23 (onnx 1.23 would write 14, which ORT 1.31 does not read)."""
MS_DOMAIN = "com.microsoft"
NUM_LOGITS = "num_logits"
"""Input (int64 [1]): how many last positions get logits (and top-k); the runtime feeds 1 for a plain step."""


class UnsupportedModel(ConfigError):
    """The checkpoint's architecture is not one this builder writes (the export falls back to optimum)."""


def _check_config(config) -> None:
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_TYPES:
        raise UnsupportedModel(f"model_type {model_type!r} is not built directly (supported: {SUPPORTED_TYPES})")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModel(f"hidden_act {config.hidden_act!r}: only silu MLPs are built directly")
    if getattr(config, "mlp_bias", False):
        raise UnsupportedModel("MLP biases are not built directly")
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", model_type == "mistral"):
        raise UnsupportedModel("sliding-window attention is not built directly")
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type in ("dynamic", "longrope"):
        raise UnsupportedModel(f"rope scaling {rope_type!r} depends on the sequence length: not built directly")
    if getattr(config, "pretraining_tp", 1) not in (1, None):
        raise UnsupportedModel("pretraining_tp > 1 is not built directly")


def _rotary_tables(model, max_positions: int):
    """cos/sin (max_positions, head_dim / 2) from the model's own rotary module (any static rope type)."""
    import torch

    rotary = model.model.rotary_emb
    head_dim = model.config.head_dim if getattr(model.config, "head_dim", None) else model.config.hidden_size // model.config.num_attention_heads
    positions = torch.arange(max_positions).unsqueeze(0)
    probe = torch.zeros(1, 1, head_dim, dtype=torch.float32)
    with torch.no_grad():
        cos, sin = rotary(probe, positions)
    half = head_dim // 2
    # HF rotate_half layout: the two halves of cos/sin are equal; the op takes one half
    return cos[0, :, :half].float().numpy(), sin[0, :, :half].float().numpy()


SHORTLIST_COARSE = "lm_head_coarse"
"""Name of the shortlist head's coarse MatMul: the one node ``graph.quantize_shortlist_head`` quantises."""


def build_decoder(checkpoint: Path, out: Path, *, shortlist: int = 0, exact_ids: tuple[int, ...] = ()) -> dict:
    """Write ``out`` (an ONNX decoder with KV cache, fp32) from the checkpoint folder; returns a summary.

    ``shortlist`` > 0 writes the shortlist head (module docstring) when it is smaller than the
    vocabulary; ``exact_ids`` (the tag tokens) are always scored exactly."""
    import numpy as np
    import torch
    from onnx import TensorProto, helper, numpy_helper
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(checkpoint)
    _check_config(config)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    hidden = config.hidden_size
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    layers = config.num_hidden_layers
    eps = float(config.rms_norm_eps)
    max_positions = int(config.max_position_embeddings)

    initializers: list = []
    nodes: list = []

    def weight(name: str, array) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def const_i64(name: str, values: list[int]) -> str:
        initializers.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> list[str]:
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs

    def linear_t(module) -> np.ndarray:
        return module.weight.detach().float().numpy().T  # HF (out, in) -> MatMul (in, out)

    state = model.model
    cos, sin = _rotary_tables(model, max_positions)
    weight("cos_cache", cos)
    weight("sin_cache", sin)
    embed = state.embed_tokens.weight.detach().float().numpy()
    weight("embed_tokens", embed)
    lm_head = model.lm_head.weight.detach().float().numpy()
    weight("lm_head_t", lm_head.T)  # a separate (transposed) copy even when tied: the head is quantised, the lookup is not
    shortlist = shortlist if 0 < shortlist < config.vocab_size else 0
    if shortlist:  # the exact rows, (vocab, hidden): the lookup table itself when the head is tied to it
        rows = "embed_tokens" if np.array_equal(lm_head, embed) else weight("lm_head_rows", lm_head)

    # -- the additive attention mask (B, 1, S, T), once per run --------------------------------------
    # allowed(b, i, j) = attention_mask[b, j] and j <= past + i; else the float minimum (as transformers:
    # a fully masked row, a left-padding position, stays finite instead of NaN)
    const_i64("i64_0", [0])
    const_i64("i64_1", [1])
    const_i64("axes_01", [0, 1])
    const_i64("axes_12", [1, 2])
    node("Shape", ["input_ids"], ["ids_shape"], "mask/ids_shape")
    node("Shape", ["attention_mask"], ["mask_shape"], "mask/mask_shape")
    node("Gather", ["ids_shape", "i64_1"], ["seq_len"], "mask/seq_len", axis=0)  # [S]
    node("Gather", ["mask_shape", "i64_1"], ["total_len"], "mask/total_len", axis=0)  # [T]
    node("Sub", ["total_len", "seq_len"], ["past_len"], "mask/past_len")
    node("Squeeze", ["total_len", "i64_0"], ["total_len_s"], "mask/total_len_s")
    node("Squeeze", ["past_len", "i64_0"], ["past_len_s"], "mask/past_len_s")
    initializers.append(helper.make_tensor("i64_one_s", TensorProto.INT64, [], [1]))
    initializers.append(helper.make_tensor("i64_zero_s", TensorProto.INT64, [], [0]))
    node("Range", ["i64_zero_s", "total_len_s", "i64_one_s"], ["key_pos"], "mask/key_pos")  # (T,)
    node("Range", ["past_len_s", "total_len_s", "i64_one_s"], ["query_pos"], "mask/query_pos")  # (S,)
    node("Unsqueeze", ["query_pos", "i64_1"], ["query_pos_col"], "mask/query_col")  # (S, 1)
    node("LessOrEqual", ["key_pos", "query_pos_col"], ["causal_ok"], "mask/causal")  # (S, T)
    node("Unsqueeze", ["causal_ok", "axes_01"], ["causal_ok_4d"], "mask/causal_4d")  # (1, 1, S, T)
    node("Cast", ["attention_mask"], ["pad_ok"], "mask/pad_ok", to=TensorProto.BOOL)  # (B, T)
    node("Unsqueeze", ["pad_ok", "axes_12"], ["pad_ok_4d"], "mask/pad_ok_4d")  # (B, 1, 1, T)
    node("And", ["causal_ok_4d", "pad_ok_4d"], ["allowed"], "mask/allowed")  # (B, 1, S, T)
    initializers.append(helper.make_tensor("mask_zero", TensorProto.FLOAT, [], [0.0]))
    initializers.append(helper.make_tensor("mask_min", TensorProto.FLOAT, [], [float(np.finfo(np.float32).min)]))
    node("Where", ["allowed", "mask_zero", "mask_min"], ["attn_bias"], "mask/bias")

    # -- layers ---------------------------------------------------------------------------------------
    node("Gather", ["embed_tokens", "input_ids"], ["embeds"], "embed", axis=0)
    q_size, kv_size = heads * head_dim, kv_heads * head_dim
    split_qkv = const_i64("split_qkv", [q_size, kv_size, kv_size])
    split_mlp = const_i64("split_mlp", [config.intermediate_size, config.intermediate_size])
    residual, pending = "embeds", None  # pending: the last block's output, not yet added to the residual
    for i, layer in enumerate(state.layers):
        p = f"layers.{i}"
        attn, mlp = layer.self_attn, layer.mlp
        w_in = weight(f"{p}.input_layernorm", layer.input_layernorm.weight.detach().float().numpy())
        if pending is None:
            normed = node("SimplifiedLayerNormalization", [residual, w_in], [f"{p}/in_norm"], f"{p}/in_norm", axis=-1, epsilon=eps)[0]
        else:
            outs = node("SkipSimplifiedLayerNormalization", [pending, residual, w_in], [f"{p}/in_norm", "", "", f"{p}/residual_in"],
                        f"{p}/in_norm", domain=MS_DOMAIN, epsilon=eps)
            normed, residual = outs[0], outs[3]
        qkv_w = np.concatenate([linear_t(attn.q_proj), linear_t(attn.k_proj), linear_t(attn.v_proj)], axis=1)
        qkv = node("MatMul", [normed, weight(f"{p}.qkv_proj", qkv_w)], [f"{p}/qkv"], f"{p}/qkv_proj")[0]
        if attn.q_proj.bias is not None:
            bias = np.concatenate([m.bias.detach().float().numpy() for m in (attn.q_proj, attn.k_proj, attn.v_proj)])
            qkv = node("Add", [qkv, weight(f"{p}.qkv_bias", bias)], [f"{p}/qkv_biased"], f"{p}/qkv_bias")[0]
        q, k, v = node("Split", [qkv, split_qkv], [f"{p}/q", f"{p}/k", f"{p}/v"], f"{p}/split_qkv", axis=-1)
        q = node("RotaryEmbedding", [q, "position_ids", "cos_cache", "sin_cache"], [f"{p}/q_rot"], f"{p}/q_rotary",
                 domain=MS_DOMAIN, num_heads=heads, interleaved=0)[0]
        k = node("RotaryEmbedding", [k, "position_ids", "cos_cache", "sin_cache"], [f"{p}/k_rot"], f"{p}/k_rotary",
                 domain=MS_DOMAIN, num_heads=kv_heads, interleaved=0)[0]
        attended = node(
            "Attention",
            [q, k, v, "attn_bias", f"past_key_values.{i}.key", f"past_key_values.{i}.value"],
            [f"{p}/attn", f"present.{i}.key", f"present.{i}.value"],
            f"{p}/attention", q_num_heads=heads, kv_num_heads=kv_heads, scale=float(getattr(attn, "scaling", head_dim**-0.5)),
        )[0]
        if attn.o_proj.bias is not None:
            raise UnsupportedModel("o_proj biases are not built directly")
        attn_out = node("MatMul", [attended, weight(f"{p}.o_proj", linear_t(attn.o_proj))], [f"{p}/attn_out"], f"{p}/o_proj")[0]
        w_post = weight(f"{p}.post_attention_layernorm", layer.post_attention_layernorm.weight.detach().float().numpy())
        outs = node("SkipSimplifiedLayerNormalization", [attn_out, residual, w_post], [f"{p}/post_norm", "", "", f"{p}/residual_mid"],
                    f"{p}/post_norm", domain=MS_DOMAIN, epsilon=eps)
        normed, residual = outs[0], outs[3]
        gate_up_w = np.concatenate([linear_t(mlp.gate_proj), linear_t(mlp.up_proj)], axis=1)
        gate_up = node("MatMul", [normed, weight(f"{p}.gate_up_proj", gate_up_w)], [f"{p}/gate_up"], f"{p}/gate_up_proj")[0]
        gate, up = node("Split", [gate_up, split_mlp], [f"{p}/gate", f"{p}/up"], f"{p}/split_mlp", axis=-1)
        sig = node("Sigmoid", [gate], [f"{p}/gate_sigmoid"], f"{p}/silu_sigmoid")[0]
        silu = node("Mul", [gate, sig], [f"{p}/gate_silu"], f"{p}/silu")[0]
        act = node("Mul", [silu, up], [f"{p}/act"], f"{p}/gate_mul_up")[0]
        pending = node("MatMul", [act, weight(f"{p}.down_proj", linear_t(mlp.down_proj))], [f"{p}/mlp_out"], f"{p}/down_proj")[0]

    # -- head: last position only ---------------------------------------------------------------------
    # ``num_logits`` asks for the logits of the last N positions (1 for a plain step): the runtime
    # verifies N-1 drafted tokens in one pass (prompt-lookup decoding)
    const_i64("last_end", [2**62])
    node("Neg", [NUM_LOGITS], ["last_start"], "head/last_start")
    for name in (pending, residual):
        node("Slice", [name, "last_start", "last_end", "i64_1"], [f"{name}/last"], f"{name}/last_positions")
    final = weight("norm", state.norm.weight.detach().float().numpy())
    normed = node("SkipSimplifiedLayerNormalization", [f"{pending}/last", f"{residual}/last", final], ["final_norm"], "final_norm",
                  domain=MS_DOMAIN, epsilon=eps)[0]
    if not shortlist:
        node("MatMul", [normed, "lm_head_t"], ["logits"], "lm_head")
    else:  # coarse scores -> top ``shortlist`` (+ exact_ids) -> their fp32 rows . normed -> written over the coarse scores
        const_i64("shortlist_k", [shortlist])
        const_i64("shortlist_exact", list(exact_ids))
        const_i64("shortlist_n_exact", [len(exact_ids)])
        const_i64("i64_m1", [-1])
        coarse = node("MatMul", [normed, "lm_head_t"], ["head/coarse"], SHORTLIST_COARSE)[0]
        _, picked = node("TopK", [coarse, "shortlist_k"], ["head/coarse_top", "head/picked"], "head/shortlist", axis=-1, largest=1, sorted=0)
        if exact_ids:
            node("Shape", [picked], ["head/picked_shape"], "head/picked_shape")
            node("Slice", ["head/picked_shape", "i64_0", "i64_m1"], ["head/lead"], "head/lead")
            node("Concat", ["head/lead", "shortlist_n_exact"], ["head/exact_shape"], "head/exact_shape", axis=0)
            node("Expand", ["shortlist_exact", "head/exact_shape"], ["head/exact_ids"], "head/exact_ids")
            picked = node("Concat", [picked, "head/exact_ids"], ["head/columns"], "head/columns", axis=-1)[0]
        node("Gather", [rows, picked], ["head/rows"], "head/rows", axis=0)  # (B, n, K, H)
        node("Unsqueeze", [normed, "i64_m1"], ["head/normed_col"], "head/normed_col")  # (B, n, H, 1)
        node("MatMul", ["head/rows", "head/normed_col"], ["head/exact_col"], "head/exact")  # (B, n, K, 1)
        node("Squeeze", ["head/exact_col", "i64_m1"], ["head/exact_scores"], "head/exact_scores")
        node("ScatterElements", [coarse, picked, "head/exact_scores"], ["logits"], "head/logits", axis=-1)

    kv_shape = lambda length: ["batch_size", kv_heads, length, head_dim]  # noqa: E731
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    inputs.append(helper.make_tensor_value_info(NUM_LOGITS, TensorProto.INT64, [1]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "num_logits", config.vocab_size])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv_shape("past_sequence_length")))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, kv_shape("total_sequence_length")))
    graph = helper.make_graph(nodes, "qrw_decoder", inputs, outputs, initializer=initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                                   producer_name="qrw-export")
    onnx_model.ir_version = IR_VERSION
    from qrw.export.graph import save_model

    save_model(onnx_model, out)
    del model
    summary = {"nodes": len(nodes), "layers": layers, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "shortlist": shortlist}
    log.info("built %s: %d nodes for %d layers (attention fused, GQA %d/%d heads)", out.name, len(nodes), layers, heads, kv_heads)
    return summary
