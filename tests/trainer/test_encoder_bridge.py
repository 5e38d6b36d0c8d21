"""The sentence-encoder bridge: nearest catalog title phrases as candidates, with a tiny encoder built here.

The encoder is a randomly initialised 2-layer BERT with a tokenizer trained on catalog titles (no
download): its neighbours are arbitrary, so the tests check what holds for any encoder: phrases come
from the catalog, copies of the query are skipped, the order is by cosine, vectors are cached, and
the data build measures and reports the encoder's candidates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, catalog):
    import torch
    from transformers import BertConfig, BertModel

    from qrw.trainer.tiny import train_tiny_tokenizer

    out = tmp_path_factory.mktemp("encoder")
    tokenizer = train_tiny_tokenizer([p.title for p in catalog[::8]], vocab_size=512)
    tokenizer.padding_side = "right"
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_title_phrases_are_frequent_words_and_word_pairs():
    from qrw.trainer.encoder_bridge import title_phrases

    titles = ["SanDisk Cruzer USB flash drive 16GB", "Kingston USB flash drive", "Verbatim USB flash drive", "HP mouse"]
    phrases = title_phrases(titles, min_df=3)
    assert "usb flash" in phrases and "flash drive" in phrases and "usb" in phrases
    assert "mouse" not in phrases  # one title only
    assert not any(any(ch.isdigit() for ch in p) for p in phrases)  # "16gb" never becomes a phrase


def test_neighbours_are_the_nearest_catalog_phrases_that_are_not_copies(tiny_encoder_dir, catalog, tmp_path):
    from qrw.trainer.encoder_bridge import EncoderBridge, SentenceEncoder, title_phrases

    encoder = SentenceEncoder(tiny_encoder_dir)
    phrases = title_phrases([p.title for p in catalog[:3000]])
    bridge = EncoderBridge(encoder, phrases, per_query=3, cache_dir=tmp_path)
    query = "usb flash drive"
    found = bridge.neighbours("USB  Flash drive")  # case and spacing do not matter
    assert len(found) == 3 and all(p in phrases for p in found)
    assert all(not set(p.split()) <= set(query.split()) for p in found)
    # exactly the top 3 by cosine among the phrases that are not made only of query words
    vec = encoder.encode([query])[0]
    scores = bridge.vectors @ vec
    allowed = [i for i in np.argsort(-scores, kind="stable") if not set(phrases[i].split()) <= set(query.split())]
    assert found == [phrases[i] for i in allowed[:3]]
    assert np.allclose(np.linalg.norm(bridge.vectors, axis=1), 1.0, atol=1e-5)
    # primed queries give the same answer, and the phrase vectors come back from the cache
    bridge.prime(["usb flash drive", "gaming mouse"])
    assert bridge.neighbours(query) == found
    cached = list(tmp_path.glob("phrases-*.npy"))
    assert len(cached) == 1
    again = EncoderBridge(encoder, phrases, per_query=1, cache_dir=tmp_path)
    assert np.array_equal(again.vectors, bridge.vectors)
    assert again.neighbours(query) == found[:1]


def test_encoder_bridge_rejects_bad_settings(tiny_encoder_dir, tmp_path):
    from qrw.trainer.encoder_bridge import EncoderBridge, SentenceEncoder

    with pytest.raises(FileNotFoundError, match="not a folder"):
        SentenceEncoder(tmp_path / "missing")
    encoder = SentenceEncoder(tiny_encoder_dir)
    with pytest.raises(ValueError, match="per_query"):
        EncoderBridge(encoder, ["flash drive"], per_query=0)
    with pytest.raises(ValueError, match="no catalog phrases"):
        EncoderBridge(encoder, [])


def test_data_build_measures_the_encoders_candidates(small_data_config, training_catalog, tiny_encoder_dir, tmp_path,
                                                     monkeypatch):
    import dataclasses

    from qrw.trainer.data import build_data

    monkeypatch.setenv("QRW_CACHE_DIR", str(tmp_path / "cache"))
    config = dataclasses.replace(small_data_config, output_dir=str(tmp_path / "data"), pseudo_queries=60,
                                 agreement_sample=0, encoder=str(tiny_encoder_dir), encoder_neighbours=2)
    card = build_data(config, catalog=training_catalog, progress=False)
    summary = card["encoder_bridge"]
    assert summary["encoder"] == str(tiny_encoder_dir) and summary["per_query"] == 2
    assert summary["catalog_phrases"] > 1000
    assert summary["candidates_measured"] > 0  # the encoder's phrases were measured like any other candidate
    assert "Sentence-encoder bridge" in (tmp_path / "data" / "data_card.md").read_text()
    assert list((tmp_path / "cache" / "encoder_bridge").glob("phrases-*.npy"))
    tags = [json.loads(line) for line in (tmp_path / "data" / "tag_train.jsonl").read_text().splitlines()]
    assert tags and all(t["rewrite"] for t in tags)
