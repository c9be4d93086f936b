"""Novelty, the Self-Instruct rule: a candidate too close to any row of the pool is not new.

The pool is every seed row plus every accepted synthetic row. "Too close" is a ROUGE-L F1 above
`expand.novelty_rouge_l` or an estimated Jaccard similarity of word shingles (MinHash) above the dedup
threshold, with the same shingles and signatures as transform's dedup (`tasks.transform.dedup`). Both are
checked against the whole pool; rapidfuzz computes the LCS lengths and numpy compares the signatures, so a
pool of many thousands stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from tasks.transform.dedup import minhash_signatures

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def novelty_text(example: Mapping[str, Any]) -> str:
    """What makes a row itself: the request (the input when there is one, else the instruction) and the answer."""
    request = str(example.get("input") or "").strip() or str(example["instruction"])
    return f"{request}\n{example['output']}"


def minhash_signature(text: str) -> np.ndarray:
    """The MinHash signature transform's dedup gives this text."""
    return minhash_signatures(pl.Series([text], dtype=pl.String))[0]


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts over lowercased words."""
    x, y = words(a), words(b)
    if not x or not y:
        return 0.0
    lcs = LCSseq.similarity(x, y)
    return 2 * lcs / (len(x) + len(y))


@dataclass
class Closest:
    rouge_l: float
    rouge_l_id: str | None
    jaccard: float
    jaccard_id: str | None


class NoveltyPool:
    """Seeds and accepted rows; `closest` measures a candidate against all of them."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.tokens: list[list[str]] = []
        self.signatures: list[np.ndarray] = []

    def add(self, row_id: str, text: str) -> None:
        toks = words(text)
        self.ids.append(row_id)
        self.tokens.append(toks)
        self.signatures.append(minhash_signature(text))

    def closest(self, text: str) -> Closest:
        toks = words(text)
        if not self.ids or not toks:
            return Closest(0.0, None, 0.0, None)
        lcs = process.cdist([toks], self.tokens, scorer=LCSseq.similarity, dtype=np.int32)[0].astype(float)
        lengths = np.array([len(t) for t in self.tokens], dtype=float)
        precision = np.divide(lcs, lengths, out=np.zeros_like(lcs), where=lengths > 0)
        recall = lcs / len(toks)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(lcs), where=denom > 0)
        jac = (np.vstack(self.signatures) == minhash_signature(text)).mean(axis=1)
        i, j = int(f1.argmax()), int(jac.argmax())
        return Closest(float(f1[i]), self.ids[i], float(jac[j]), self.ids[j])


def novelty_reason(closest: Closest, rouge_l_max: float, jaccard_max: float) -> tuple[str, str] | None:
    """`None` when new enough, else (reason, detail naming the score and the row it collides with)."""
    if closest.rouge_l > rouge_l_max:
        return "too_similar_rouge_l", f"rouge_l={closest.rouge_l:.2f}>{rouge_l_max} vs {closest.rouge_l_id}"
    if closest.jaccard > jaccard_max:
        return "too_similar_minhash", f"minhash={closest.jaccard:.2f}>{jaccard_max} vs {closest.jaccard_id}"
    return None
