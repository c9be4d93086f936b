"""`eval` group: how the tuned model is compared with its base on the test split."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    max_examples: int = 32  # test rows evaluated (a seeded sample when the split is larger)
    generate: bool = True  # greedy answers scored with ROUGE-L and chrF against the reference
    max_new_tokens: int = 64
    generation_batch_size: int = 8
    max_seq_len: int = 1024  # longer test rows are quarantined
    judge_win_rate: bool = False  # the teacher picks the better answer, both orders
    metric: str = "loss"  # the verdict's metric: loss | rouge_l | chrf | judge_win_rate
    samples_in_markdown: int = 10
