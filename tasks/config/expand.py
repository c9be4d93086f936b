"""`expand` group: how far to grow the train split, with which mutations, judged how, within which budget."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExpandConfig:
    enabled: bool = True
    target_size: int = 40
    mutations: dict[str, float] = field(
        default_factory=lambda: {"constraint": 1.0, "deepen": 1.0, "concretise": 1.0, "breadth": 1.0}
    )
    judges: int = 1
    threshold: float = 3.0
    novelty_rouge_l: float = 0.7
    max_calls: int = 60
    max_tokens: int = 20000
    max_cost: float = 0.0
