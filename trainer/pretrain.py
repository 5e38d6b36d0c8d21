"""``qrw train pretrain`` (optional): continued pretraining on catalog text before SFT.

Plain causal-LM loss on product texts (title, brand, short description, descriptive attributes),
one product per example, so the model learns the catalog's vocabulary (model codes, product types,
units) that rewrites must use. Uses trl's ``SFTTrainer`` on a ``text`` column.
"""

from __future__ import annotations

import dataclasses
import random
import time

from qrw.trainer.config import field
from qrw.trainer.stage import StageConfig


@dataclasses.dataclass
class PretrainStageConfig(StageConfig):
    """``qrw train pretrain``."""

    output_dir: str = field("runs/pretrain", "where the model, checkpoints, card and plots go")
    catalog_dir: str | None = field(None, "Icecat folder; default: QRW_DATA_DIR or shared/data/icecat")
    max_texts: int = field(20000, "products used (sampled with the seed; 0 = all)")
    max_length: int = field(128, "tokens per product text")


def catalog_texts(catalog, max_texts: int, seed: int) -> list[str]:
    texts = []
    for p in catalog:
        parts = [p.title, p.supplier, p.short_description, p.attribute_text]
        texts.append("\n".join(part for part in parts if part))
    if max_texts and len(texts) > max_texts:
        texts = random.Random(seed).sample(texts, max_texts)
    return texts


def run_pretrain(config: PretrainStageConfig) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from qrw.search.catalog import load_catalog
    from qrw.trainer.stage import finish, load_base

    started = time.perf_counter()
    model, tokenizer, base = load_base(config.model)
    texts = catalog_texts(load_catalog(config.catalog_dir), config.max_texts, config.seed)
    dataset = Dataset.from_list([{"text": t} for t in texts])
    args = config.make_trl_config(SFTConfig, dict(max_length=config.max_length, dataset_text_field="text", packing=False))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=config.peft_config())
    trainer.train(resume_from_checkpoint=config.resume_path())
    return finish(trainer, tokenizer, config, stage="pretrain", base=base, data_sizes={"texts": len(texts)},
                  started=started)
