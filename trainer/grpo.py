"""``qrw train grpo``: GRPO on the rewrite task with trl's ``GRPOTrainer`` and retrieval rewards.

Prompts are the training-fold development queries and the training pseudo-queries
(``grpo_train.jsonl``); validation queries never appear. Rewards (``trainer.rewards``): relevance
(live index + the policy's own tag probability), conversion (SIMULATED), validity and a drift guard,
weighted by ``reward_weights``; ``beta`` > 0 adds the KL drift term against the starting model.
Prompts are short by construction (``plugin.prompt.clip_query`` cuts queries to 200 characters) and
``max_prompt_tokens`` drops any row whose prompt is still longer, since GRPOConfig has no prompt limit.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

from qrw.trainer.config import field
from qrw.trainer.stage import StageConfig

REWARD_NAMES = ("relevance", "conversion_simulated", "validity", "drift_guard")


@dataclasses.dataclass
class GrpoStageConfig(StageConfig):
    """``qrw train grpo``."""

    model: str = field("runs/sft", "the SFT checkpoint to start from")
    output_dir: str = field("runs/grpo", "where the model, checkpoints, card and plots go")
    learning_rate: float = field(2e-6, "peak learning rate (GRPO wants it far below SFT's)")
    max_steps: int = field(200, "optimizer steps; -1 = run num_train_epochs")
    per_device_train_batch_size: int = field(8, "completions per device per step (prompts x num_generations)")
    num_generations: int = field(4, "completions per prompt (the GRPO group)")
    max_completion_length: int = field(24, "tokens generated per completion")
    max_prompt_tokens: int = field(96, "rows whose prompt has more tokens are dropped")
    temperature: float = field(1.0, "sampling temperature for the group")
    beta: float = field(0.02, "KL coefficient against the starting model (0 skips the reference model)")
    reward_weights: dict[str, float] = field(
        {"relevance": 1.0, "conversion_simulated": 0.5, "validity": 0.5, "drift_guard": 0.5},
        "weight of each reward in the total (conversion_simulated is SIMULATED)")
    tag_weight: float = field(0.3, "share of the relevance reward taken from the model's own tag probability")
    url: str = field("http://127.0.0.1:9200", "OpenSearch URL for retrieval rewards")
    index: str = field("products", "index or alias")
    k: int = field(10, "top-k searched per completion")
    max_prompts: int = field(0, "use at most this many prompts (0 = all), sampled with the seed")
    log_completions: bool = field(False, "print sample completions with their rewards while training")

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.reward_weights) - set(REWARD_NAMES)
        if unknown:
            raise ValueError(f"reward_weights has unknown reward(s) {sorted(unknown)}; rewards are {list(REWARD_NAMES)}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: GRPO compares a group, use 2 or more")
        generation_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if generation_batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x gradient_accumulation_steps = {generation_batch} is not divisible by "
                f"num_generations={self.num_generations}; make it a multiple (e.g. batch {self.num_generations * 2})")
        if not 0.0 <= self.tag_weight <= 1.0:
            raise ValueError(f"tag_weight={self.tag_weight} must be in [0, 1]")


class PolicyTagger:
    """Expected grade / 3 of (query, rewrite) pairs under the policy being trained (no gradient)."""

    def __init__(self, trainer, tokenizer, batch_size: int = 32) -> None:
        from qrw.trainer.model import tag_token_ids

        self.trainer = trainer
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.tag_ids = tag_token_ids(tokenizer)

    def __call__(self, pairs):
        import torch

        from qrw.plugin.prompt import tag_prompt
        from qrw.trainer.rewards import expected_grade

        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        model.eval()
        scores: list[float] = []
        try:
            for start in range(0, len(pairs), self.batch_size):
                batch = pairs[start : start + self.batch_size]
                self.tokenizer.padding_side = "left"
                enc = self.tokenizer([tag_prompt(q, r) for q, r in batch], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(next(model.parameters()).device)
                with torch.no_grad():
                    logits = model(**enc).logits[:, -1, :]
                probs = torch.softmax(logits[:, self.tag_ids].float(), dim=-1).cpu().tolist()
                scores.extend(expected_grade(row) for row in probs)
        finally:
            if was_training:
                model.train()
        return scores


def build_rewards(config: GrpoStageConfig, data_dir: Path):
    """The reward functions (in ``REWARD_NAMES`` order, weight > 0) and their weights."""
    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import load_catalog
    from qrw.trainer.facets import facets_of
    from qrw.trainer.retrieval import Searcher
    from qrw.trainer.rewards import make_conversion_reward, make_drift_guard, make_relevance_reward, validity

    card = json.loads((data_dir / "data_card.json").read_text())
    split = json.loads((data_dir / "split.json").read_text())
    qrels_all = load_judgments(card["sources"]["judgments"])
    train_queries = set(split["train_queries"])
    qrels = {q: g for q, g in qrels_all.items() if q in train_queries}  # never reward with validation judgments
    catalog_dir = card["config"].get("data_dir")
    catalog = load_catalog(catalog_dir) if catalog_dir else load_catalog()
    facets_by_id = {p.id: facets_of(p) for p in catalog}
    brand_counts: dict[str, int] = {}
    for p in catalog:
        if p.supplier:
            brand_counts[p.supplier] = brand_counts.get(p.supplier, 0) + 1
    searcher = Searcher.connect(config.url, config.index, depth=config.k)
    available = {
        "relevance": make_relevance_reward(searcher, qrels, facets_by_id, k=config.k, tag_weight=config.tag_weight),
        "conversion_simulated": make_conversion_reward(searcher, qrels, facets_by_id, k=config.k),
        "validity": validity,
        "drift_guard": make_drift_guard(b for b, n in brand_counts.items() if n >= 5),
    }
    names = [n for n in REWARD_NAMES if config.reward_weights.get(n, 0.0) != 0.0]
    return [available[n] for n in names], [float(config.reward_weights[n]) for n in names], available["relevance"]


def run_grpo(config: GrpoStageConfig) -> dict:
    """Train and save; return the training card."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from qrw.trainer.data import read_jsonl
    from qrw.trainer.stage import finish, load_base

    started = time.perf_counter()
    data_dir = Path(config.data_dir)
    model, tokenizer, base = load_base(config.model)
    rows = read_jsonl(data_dir / "grpo_train.jsonl")
    rows = [r for r in rows if len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) <= config.max_prompt_tokens]
    if config.max_prompts and len(rows) > config.max_prompts:
        rows = random.Random(config.seed).sample(rows, config.max_prompts)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "query", "kind", "source_id")} for r in rows])
    reward_funcs, weights, relevance = build_rewards(config, data_dir)
    args = config.make_trl_config(GRPOConfig, dict(
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        reward_weights=weights,
        log_completions=config.log_completions,
    ))
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=config.peft_config())
    if config.tag_weight > 0:
        relevance.tagger = PolicyTagger(trainer, tokenizer)
    trainer.train(resume_from_checkpoint=config.resume_path())
    return finish(trainer, tokenizer, config, stage="grpo", base=base,
                  data_sizes={"prompts": len(rows),
                              "judged_prompts": sum(r["kind"] == "judged" for r in rows),
                              "pseudo_prompts": sum(r["kind"] == "pseudo" for r in rows)},
                  started=started,
                  extra={"rewards": {f.__name__: w for f, w in zip(reward_funcs, weights)},
                         "note": "conversion_simulated is SIMULATED (position-based click model over judged grades); "
                                 "no real click or purchase logs exist for this catalog"})
