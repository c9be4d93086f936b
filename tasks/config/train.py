"""`train` group: method and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    use_dora: bool = False


@dataclass
class TrainConfig:
    method: str = "lora"  # lora | qlora | full
    lora: LoraConfig = field(default_factory=LoraConfig)
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_tokens: int = 2048
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_len: int = 512
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    eval_every_steps: int = 20
    early_stopping_patience: int = 3
    save_every_steps: int = 20
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    max_steps: int = -1
