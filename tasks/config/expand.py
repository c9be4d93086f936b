"""`expand` group: how far to grow the train split, with which mutations, judged how, within which budget."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExpandConfig:
    enabled: bool = True
    # how many accepted synthetic rows to add to the train split (stops earlier on max_candidates or budget)
    target_size: int = 40
    # at most this many candidates are generated, accepted or not
    max_candidates: int = 24
    # relative weights: constraint | deepen | concretise | reasoning | breadth | rewrite (the answer)
    mutations: dict[str, float] = field(
        default_factory=lambda: {"constraint": 1.0, "deepen": 1.0, "concretise": 1.0, "breadth": 1.0}
    )
    # a panel of this many judge calls per candidate (different seeds), aggregated with `aggregate`
    judges: int = 1
    aggregate: str = "mean"  # mean | median | min
    # json: a 1-5 score per rubric criterion, parsed from the reply; probabilities: one overall 1-5 digit,
    # weighted by the first token's probabilities (G-Eval), for teachers that report logprobs (the embedded one)
    judge_format: str = "json"
    # accept when the aggregate rubric score (1-5) reaches this
    threshold: float = 3.0
    # `rewrite` candidates must also beat the seed answer in a pairwise comparison, asked in both orders
    pairwise_rewrite: bool = True
    # novelty (Self-Instruct rule) against seeds and accepted rows
    novelty_rouge_l: float = 0.7
    novelty_minhash: float | None = None  # None: data.transform.dedup_threshold
    # candidates are made in waves of this size (the concurrency fans out inside a wave)
    wave_size: int = 8
    mutate_max_tokens: int = 64
    answer_max_tokens: int = 128
    judge_max_tokens: int = 48
    # budget: caps on real (uncached) teacher calls, their tokens, and their cost in the teacher's currency
    max_calls: int = 60
    max_tokens: int = 20000
    max_cost: float = 0.0
