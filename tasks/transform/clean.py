"""Text cleaning as polars expressions: Unicode NFC, no invisible characters, tidy whitespace."""

from __future__ import annotations

import polars as pl

# zero-width and bidi marks (WhatsApp on iOS sprinkles LRM), BOM, soft hyphen, word joiners
INVISIBLE = r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"


def clean_text(column: str | pl.Expr) -> pl.Expr:
    """NFC-normalise, drop invisible characters, unify newlines, collapse blank runs and trim each line."""
    expr = pl.col(column) if isinstance(column, str) else column
    return (
        expr.str.normalize("NFC")
        .str.replace_all(INVISIBLE, "")
        .str.replace_all(r"\r\n?", "\n")
        .str.replace_all(r"[\t\f\v \u00a0\u2000-\u200a\u202f\u205f\u3000]+", " ")
        .str.replace_all(r" ?\n ?", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )


def normalised_for_matching(column: str | pl.Expr) -> pl.Expr:
    """Case-folded, NFKC, punctuation-free, single-spaced text: the form duplicates are compared in."""
    expr = pl.col(column) if isinstance(column, str) else column
    return (
        expr.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[^\w\s]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
