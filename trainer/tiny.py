"""A tiny causal LM built from scratch, for tests: a byte-level BPE trained on catalog text plus a
few-layer Qwen2 config.

Why: tests must exercise the real training, export and serving code paths without downloading
weights, within seconds on a 2-core CPU. The tokenizer is trained on the texts given (catalog titles
and the prompt template's words), so prompts tokenize into sensible pieces, and each relevance tag
(a digit) is one token, as the runtime requires.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from qrw.plugin.prompt import TAGS, rewrite_prompt, tag_prompt

EOS_TOKEN = "<|endoftext|>"


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE over ``texts`` wrapped as a left-padding ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    template_texts = [rewrite_prompt("q"), tag_prompt("q", "r")] + [t.token for t in TAGS]
    bpe.train_from_iterator(list(texts) + template_texts * 50, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        bos_token=None,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    return tokenizer


def build_tiny_model(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a randomly initialised ~1M-parameter Qwen2 causal LM and its tokenizer to ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
