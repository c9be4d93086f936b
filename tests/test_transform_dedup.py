"""Dedup: exact and MinHash/LSH near-duplicates, kept in priority order, checked against datasketch."""

from __future__ import annotations

import numpy as np
import polars as pl
from datasketch import MinHash

from tasks.transform.dedup import exact_duplicate_of, minhash_signatures, near_duplicates, shingle_hashes

BASE = (
    "o plano anual do afinar inclui suporte prioritário por e-mail, atualizações mensais do modelo, "
    "treinamento da equipe e até cinco usuários sem custo adicional durante o primeiro ano de contrato"
)


def test_exact_duplicates_ignore_case_punctuation_and_spacing() -> None:
    texts = pl.Series(["Olá, tudo bem?", "olá tudo   BEM", "Olá, tudo mal?"])
    assert exact_duplicate_of(texts).tolist() == [0, 0, 2]


def test_a_near_copy_is_found_and_points_at_the_earlier_row() -> None:
    near = BASE.replace("cinco", "seis")
    texts = pl.Series([BASE, "uma frase totalmente diferente sobre outra coisa qualquer", near])
    found = near_duplicates(texts, threshold=0.8)
    assert found.duplicate_of.tolist() == [-1, -1, 0]
    assert found.similarity[2] >= 0.8


def test_rows_below_the_threshold_are_kept() -> None:
    other = " ".join(BASE.split()[:12]) + " mas o plano mensal não inclui nada disso e custa menos por usuário ativo"
    found = near_duplicates(pl.Series([BASE, other]), threshold=0.8)
    assert found.duplicate_of.tolist() == [-1, -1]


def test_a_row_similar_only_to_a_removed_row_is_kept() -> None:
    # greedy: c is compared with kept rows only (a), not with b, which already went
    words = BASE.split()
    a = " ".join(words)
    b = " ".join([*words[:-3], "x1", "x2", "x3"])
    found = near_duplicates(pl.Series([a, b, a]), threshold=0.7)
    assert found.duplicate_of[2] == 0


def test_signatures_estimate_jaccard_like_datasketch() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    base = list(rng.choice(vocab, 120))
    texts = [" ".join(base), " ".join(base[:90] + list(rng.choice(vocab, 30)))]
    ours = minhash_signatures(pl.Series(texts), num_perm=256)
    ours_j = float((ours[0] == ours[1]).mean())
    rows, shingles = shingle_hashes(pl.Series(texts))
    sets = [set(shingles[rows == i].tolist()) for i in (0, 1)]
    true_j = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    theirs = []
    for s in sets:
        m = MinHash(num_perm=256)
        m.update_batch([int(x).to_bytes(8, "little") for x in s])
        theirs.append(m)
    assert abs(ours_j - true_j) < 0.08
    assert abs(theirs[0].jaccard(theirs[1]) - true_j) < 0.08


def test_empty_and_one_word_texts_do_not_break_signatures() -> None:
    found = near_duplicates(pl.Series(["", "ok", "ok", "!!!"]), threshold=0.8)
    assert found.duplicate_of.tolist() == [-1, -1, 1, -1]
