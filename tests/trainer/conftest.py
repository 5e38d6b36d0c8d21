"""Fixtures for the trainer tests: one small data build and one tiny model per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_data_config(tmp_path_factory, data_dir, judgments_path, opensearch_url, indexed_catalog):
    from qrw.trainer.data import DataConfig

    return DataConfig(output_dir=str(tmp_path_factory.mktemp("data")), data_dir=str(data_dir),
                      judgments=str(judgments_path), url=opensearch_url, index=indexed_catalog,
                      pseudo_queries=400, max_candidates=6, agreement_sample=120)


@pytest.fixture(scope="session")
def training_catalog(data_dir):
    from qrw.trainer.catalog import TrainingCatalog

    return TrainingCatalog.icecat(data_dir)


@pytest.fixture(scope="session")
def built_data(small_data_config, training_catalog):
    from qrw.trainer.data import build_data

    card = build_data(small_data_config, catalog=training_catalog, progress=False)
    return small_data_config, card


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, catalog):
    from qrw.trainer.tiny import build_tiny_model

    titles = [p.title for p in catalog[::6]]  # a third of the catalog keeps tokenizer training to seconds
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), titles, vocab_size=768)
