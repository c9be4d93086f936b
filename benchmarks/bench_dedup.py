"""Near-duplicate detection on N examples: afinar's vectorised MinHash + banded LSH vs plain datasketch.

Prints seconds, rows/s and the speed-up over the baseline (datasketch `MinHash.update_batch` per row +
`MinHashLSH` insert/query in pure Python), plus recall/precision of both against exact Jaccard on the
planted near-duplicates. Usage: `python benchmarks/bench_dedup.py [--n 100000] [--baseline-n 20000]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from tasks.transform.dedup import near_duplicates, shingle_hashes

VOCAB = (  # noqa: SIM905
    "o a de que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das tem à seu "
    "sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era depois sem mesmo aos "
    "plano anual cliente pedido entrega prazo desconto cartão boleto suporte produto preço valor frete loja "
    "the customer order plan price support delivery refund discount shipping product help please thanks"
).split()


def corpus(n: int, seed: int = 0) -> tuple[pl.Series, np.ndarray]:
    """n texts of 20-60 words; ~10% are near copies (2-3 words changed) of an earlier text. Returns (texts, source)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(VOCAB + [f"w{i}" for i in range(5000)])
    texts: list[str] = []
    source = np.full(n, -1)
    for i in range(n):
        if i > 10 and rng.random() < 0.1:
            j = int(rng.integers(0, i))
            words = texts[j].split()
            for k in rng.integers(0, len(words), size=2):
                words[k] = str(rng.choice(vocab))
            texts.append(" ".join(words))
            source[i] = j
        else:
            texts.append(" ".join(rng.choice(vocab, size=int(rng.integers(20, 60)))))
    return pl.Series(texts), source


def exact_jaccard(texts: pl.Series, source: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each planted copy's shingle set with its original's (0 for originals)."""
    rows, shingles = shingle_hashes(texts)
    sets: list[set[int]] = [set() for _ in range(len(texts))]
    for r, h in zip(rows.tolist(), shingles.tolist(), strict=True):
        sets[r].add(h)
    out = np.zeros(len(texts))
    for i in np.flatnonzero(source >= 0):
        a, b = sets[i], sets[source[i]]
        out[i] = len(a & b) / max(len(a | b), 1)
    return out


def baseline(texts: pl.Series, threshold: float, num_perm: int) -> np.ndarray:
    """Plain datasketch: one MinHash per row from the same shingles, greedy insert/query with MinHashLSH."""
    rows, shingles = shingle_hashes(texts)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], rows.size]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    removed = np.zeros(len(texts), dtype=bool)
    for s, e in zip(starts, ends, strict=True):
        m = MinHash(num_perm=num_perm)
        m.update_batch([int(x).to_bytes(8, "little") for x in shingles[s:e]])
        row = int(rows[s])
        if lsh.query(m):
            removed[row] = True
        else:
            lsh.insert(row, m)
    return removed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--baseline-n", type=int, default=20_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    args = parser.parse_args()

    texts, source = corpus(args.n)
    start = time.perf_counter()
    found = near_duplicates(texts, args.threshold, args.num_perm)
    ours_s = time.perf_counter() - start
    removed = found.duplicate_of >= 0
    planted = (source >= 0) & (exact_jaccard(texts, source) >= args.threshold)
    print(f"afinar near-dedup: {args.n:,} examples in {ours_s:.2f} s ({args.n / ours_s:,.0f} rows/s)")
    print(f"  removed {removed.sum():,}; planted near-copies with Jaccard ≥ {args.threshold}: {planted.sum():,}; "
          f"recall {(removed & planted).sum() / planted.sum():.3f}, "
          f"precision {(removed & planted).sum() / max(removed.sum(), 1):.3f}")  # fmt: skip

    sub = texts.head(args.baseline_n)
    start = time.perf_counter()
    removed_b = baseline(sub, args.threshold, args.num_perm)
    base_s = time.perf_counter() - start
    ours_sub = near_duplicates(sub, args.threshold, args.num_perm).duplicate_of >= 0
    per_row_base = base_s / args.baseline_n
    rate = args.baseline_n / base_s
    projected = per_row_base * args.n
    print(f"datasketch baseline: {args.baseline_n:,} examples in {base_s:.2f} s ({rate:,.0f} rows/s)")
    print(f"  → {projected:.1f} s projected for {args.n:,}")
    print(f"  agreement with afinar on those rows: {(removed_b == ours_sub).mean():.4f}")
    print(f"speed-up: {per_row_base * args.n / ours_s:.1f}x")


if __name__ == "__main__":
    main()
