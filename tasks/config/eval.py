"""`eval` group: how the tuned model is compared with its base on the test split."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    max_examples: int = 32
    generate: bool = True
    max_new_tokens: int = 64
    judge_win_rate: bool = False
    metric: str = "loss"  # the verdict's metric: loss | rouge_l | chrf
