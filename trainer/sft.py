"""``qrw train sft``: multi-task supervised fine-tuning (rewrite + tag) with trl's ``SFTTrainer``.

The two tasks share one prompt format (``plugin.prompt``) and are mixed in one dataset; the mix is
configurable (``task_mix``: how many times each task's training file is used, fractions downsample).
Loss is on the completion only; every completion ends with the tokenizer's EOS.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

from qrw.trainer.config import field
from qrw.trainer.stage import StageConfig

TASK_FILES = {"rewrite": "rewrite_train.jsonl", "tag": "tag_train.jsonl"}


@dataclasses.dataclass
class SftStageConfig(StageConfig):
    """``qrw train sft``."""

    output_dir: str = field("runs/sft", "where the model, checkpoints, card and plots go")
    num_train_epochs: float = field(3.0, "epochs when max_steps is -1")
    task_mix: dict[str, float] = field({"rewrite": 1.0, "tag": 1.0},
                                       "times each task's training file is used (0.5 = half of it, 2 = twice)")
    max_length: int = field(128, "tokens per example (prompt + completion); longer ones are cut")

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.task_mix) - set(TASK_FILES)
        if unknown:
            raise ValueError(f"task_mix has unknown task(s) {sorted(unknown)}; tasks are {sorted(TASK_FILES)}")
        if not any(w > 0 for w in self.task_mix.values()):
            raise ValueError("task_mix gives every task weight 0: nothing to train on")
        if any(w < 0 for w in self.task_mix.values()):
            raise ValueError("task_mix weights must be >= 0")


def mix_tasks(data_dir: str | Path, task_mix: dict[str, float], seed: int) -> tuple[list[dict], dict[str, int]]:
    """Prompt/completion records of every task, each used ``weight`` times (deterministic), shuffled."""
    from qrw.trainer.data import read_jsonl

    rng = random.Random(seed)
    records: list[dict] = []
    sizes: dict[str, int] = {}
    for task, weight in task_mix.items():
        if weight <= 0:
            continue
        rows = [{"prompt": r["prompt"], "completion": r["completion"], "task": task}
                for r in read_jsonl(Path(data_dir) / TASK_FILES[task])]
        whole, fraction = int(weight), weight - int(weight)
        chosen = rows * whole + rng.sample(rows, int(round(len(rows) * fraction)))
        sizes[task] = len(chosen)
        records.extend(chosen)
    rng.shuffle(records)
    return records, sizes


def run_sft(config: SftStageConfig) -> dict:
    """Train and save; return the training card."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    from qrw.trainer.stage import apply_freezing, load_base, time_limit

    # A LoRA run from an adapter folder continues that adapter (a second SFT phase, then GRPO: one adapter ships).
    model, tokenizer, base = load_base(config.model, trainable_adapter=config.lora)
    continuing = config.lora and hasattr(model, "peft_config")
    trainable = apply_freezing(model, config) if not config.lora else {}
    records, sizes = mix_tasks(config.data_dir, config.task_mix, config.seed)
    eos = tokenizer.eos_token
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"] + eos} for r in records])
    args = config.make_trl_config(SFTConfig, dict(max_length=config.max_length, completion_only_loss=True,
                                                  packing=False, dataset_num_proc=None))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=None if continuing else config.peft_config(model.config.num_hidden_layers),
                         callbacks=time_limit(config))
    trainer.train(resume_from_checkpoint=config.resume_path())
    from qrw.trainer.stage import finish

    return finish(trainer, tokenizer, config, stage="sft", base=base,
                  data_sizes={"examples": len(records), **{f"{k}_examples": v for k, v in sizes.items()}},
                  started=started, extra=trainable)
