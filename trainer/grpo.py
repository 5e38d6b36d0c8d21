"""``qrw train grpo``: GRPO on the rewrite task with trl's ``GRPOTrainer`` and retrieval rewards.

Prompts are the training-fold development queries and the training pseudo-queries
(``grpo_train.jsonl``); validation queries never appear. Rewards (``trainer.rewards``): relevance
(the measured nDCG@10 gain of the completion's rewrite list, in process), conversion (SIMULATED),
validity and a drift guard,
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

from qrw.search.connect import default_url
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
    gain_scale: float = field(5.0, "the relevance reward is the measured nDCG@10 gain times this, clipped to [-1, 1]")
    reward_backend: str = field("lexical", "where rewards are measured: lexical (in-process BM25 mirror) | opensearch (the real node)")
    url: str = field(default_url(), "OpenSearch URL ($QRW_OPENSEARCH_URL or http://127.0.0.1:9200) (reward_backend opensearch)")
    index: str = field("products", "index or alias (reward_backend opensearch)")
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
        if self.gain_scale <= 0:
            raise ValueError(f"gain_scale={self.gain_scale} must be positive")
        if self.reward_backend not in ("lexical", "opensearch"):
            raise ValueError(f"reward_backend={self.reward_backend!r}: choose lexical or opensearch")


def build_rewards(config: GrpoStageConfig, data_dir: Path):
    """The reward functions (in ``REWARD_NAMES`` order, weight > 0) and their weights.

    Judged intents come from the training folds only (the split file); validation judgments never
    reach a reward.
    """
    from qrw.eval.judgments import load_judgments
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.facets import by_type
    from qrw.trainer.intent import MergeSettings, judged_intent
    from qrw.trainer.rewards import RewardContext, make_conversion_reward, make_drift_guard, make_relevance_reward, validity

    card = json.loads((data_dir / "data_card.json").read_text())
    split = json.loads((data_dir / "split.json").read_text())
    train_queries = set(split["train_queries"])
    judgments = card["sources"].get("judgments")
    qrels = {q: g for q, g in load_judgments(judgments).items() if q in train_queries} if judgments else {}
    built = card["config"]
    catalog = TrainingCatalog.from_source(built.get("profile"), built.get("catalog"), built.get("data_dir"))
    facets = catalog.facets()
    merge = MergeSettings(card["merge_while_measuring"]["weight"], card["merge_while_measuring"]["operator"])
    judged = {q: judged_intent(q, g, facets) for q, g in qrels.items()}
    if config.reward_backend == "opensearch":
        from qrw.search.connect import open_client
        from qrw.trainer.rewards import NodeRewardContext

        context = NodeRewardContext(open_client(config.url), config.index, facets, judged, merge, by_type(facets),
                                    catalog.baseline)
    else:
        context = RewardContext(catalog.lexical_index(), facets, judged, merge, by_type(facets))
    available = {
        "relevance": make_relevance_reward(context, config.gain_scale),
        "conversion_simulated": make_conversion_reward(context),
        "validity": validity,
        "drift_guard": make_drift_guard(facets),
    }
    names = [n for n in REWARD_NAMES if config.reward_weights.get(n, 0.0) != 0.0]
    return [available[n] for n in names], [float(config.reward_weights[n]) for n in names]


def run_grpo(config: GrpoStageConfig) -> dict:
    """Train and save; return the training card."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from qrw.trainer.data import read_jsonl
    from qrw.trainer.stage import finish, load_base, time_limit

    started = time.perf_counter()
    data_dir = Path(config.data_dir)
    from qrw.trainer.stage import apply_freezing

    # A LoRA run continues the adapter it starts from (so one adapter ships); otherwise the model is fine-tuned.
    model, tokenizer, base = load_base(config.model, trainable_adapter=config.lora)
    continuing = config.lora and hasattr(model, "peft_config")
    trainable = apply_freezing(model, config) if not config.lora else {}
    rows = read_jsonl(data_dir / "grpo_train.jsonl")
    rows = [r for r in rows if len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) <= config.max_prompt_tokens]
    if config.max_prompts and len(rows) > config.max_prompts:
        rows = random.Random(config.seed).sample(rows, config.max_prompts)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "query", "intent")} for r in rows])
    reward_funcs, weights = build_rewards(config, data_dir)
    args = config.make_trl_config(GRPOConfig, dict(
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        reward_weights=weights,
        log_completions=config.log_completions,
    ))
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                          processing_class=tokenizer,
                          peft_config=None if continuing else config.peft_config(model.config.num_hidden_layers),
                          callbacks=time_limit(config))
    trainer.train(resume_from_checkpoint=config.resume_path())
    return finish(trainer, tokenizer, config, stage="grpo", base=base,
                  data_sizes={"prompts": len(rows),
                              "judged_prompts": sum('"judged"' in r["intent"] for r in rows),
                              "pseudo_prompts": sum('"pseudo"' in r["intent"] for r in rows)},
                  started=started,
                  extra={"rewards": {f.__name__: w for f, w in zip(reward_funcs, weights)},
                         "note": "conversion_simulated is SIMULATED (position-based click model over proxy grades); "
                                 "no real click or purchase logs exist for this catalog", **trainable})
