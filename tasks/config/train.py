"""`train` group: method and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    use_dora: bool = False
    # None: the model catalog entry's `lora_target_modules`
    target_modules: list[str] | None = None


@dataclass
class TrainConfig:
    method: str = "lora"  # lora | qlora (4-bit, CUDA + bitsandbytes) | full
    lora: LoraConfig = field(default_factory=LoraConfig)
    epochs: float = 2.0
    max_steps: int = -1  # > 0 caps the optimizer steps (the schedule is laid out for the cap)
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.05
    # a micro-batch is `per_device_batch_size` rows of at most `max_seq_len` tokens; with packing each
    # row holds several examples (positions restart per example, so no attention crosses them)
    per_device_batch_size: int = 4
    max_seq_len: int = 512  # longer examples are quarantined, never truncated
    packing: bool = True  # false: length-grouped rows, one example per row, padded to the longest
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (GPU)
    eval_every_steps: int = 20
    early_stopping_patience: int = 3  # evals without a better val loss before stopping; 0 = never
    restore_best: bool = True  # the saved adapter is the one with the best val loss
    save_every_steps: int = 20
    keep_checkpoints: int = 2
    log_every_steps: int = 1
    # processes on this machine: > 1 relaunches training under torchrun (gloo on CPU, nccl on GPU)
    nproc: int = 1
    distributed: str = "ddp"  # ddp (a replica per process); FSDP sharding is not implemented yet
