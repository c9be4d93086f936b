"""Personal data out before anything is written or sent to a teacher: typed placeholders, counted.

E-mails (pattern), CPF and CNPJ (pattern + check digits via python-stdnum, so ordinary numbers
stay), phone numbers (libphonenumber's matcher: Brazilian and international formats), card
numbers (13-19 digits passing Luhn) and configured names (whole words, any case).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import phonenumbers
import polars as pl
from stdnum import luhn
from stdnum.br import cnpj, cpf

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "cnpj": "[CNPJ]",
    "cpf": "[CPF]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "name": "[NAME]",
}

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CNPJ = re.compile(r"(?<![\w./-])\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2}(?![\w/-])")
CPF = re.compile(r"(?<![\w./-])\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?![\w/-])")
CARD = re.compile(r"(?<![\w+])(?:\d[ -]?){12,18}\d(?!\w)")
# rows worth a closer look: an @, or 8+ digits (a phone/CPF/CNPJ/card needs at least that many)
MAY_HOLD_PII = r"@|(?:\d\D{0,3}){8,}"


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


class Redactor:
    """Replaces personal data in text with typed placeholders and keeps the counts per type."""

    def __init__(self, names: Iterable[str] = (), phone_region: str = "BR") -> None:
        self.phone_region = phone_region
        names = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
        self.names = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", re.I) if names else None
        self.counts: Counter[str] = Counter()

    def _sub(self, pattern: re.Pattern[str], kind: str, text: str, valid: object = None) -> str:
        def replace(match: re.Match[str]) -> str:
            if valid is not None and not valid(match.group(0)):  # type: ignore[operator]
                return match.group(0)
            self.counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(replace, text)

    def _phones(self, text: str) -> str:
        matches = list(phonenumbers.PhoneNumberMatcher(text, self.phone_region, phonenumbers.Leniency.VALID))
        for match in reversed(matches):
            text = text[: match.start] + PLACEHOLDERS["phone"] + text[match.end :]
        if matches:
            self.counts["phone"] += len(matches)
        return text

    def redact(self, text: str) -> str:
        """`text` with every recognised piece of personal data replaced by its placeholder."""
        if "@" in text:
            text = self._sub(EMAIL, "email", text)
        if sum(c.isdigit() for c in text) >= 8:
            text = self._sub(CNPJ, "cnpj", text, lambda s: cnpj.is_valid(_digits(s)))
            text = self._sub(CPF, "cpf", text, lambda s: cpf.is_valid(_digits(s)))
            text = self._phones(text)
            text = self._sub(CARD, "card", text, _is_card)
        if self.names is not None:
            text = self._sub(self.names, "name", text)
        return text

    def redact_column(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """Redact one string column; only rows that may hold personal data go through Python."""
        if frame.height == 0:
            return frame
        suspect = pl.col(column).str.contains(MAY_HOLD_PII)
        if self.names is not None:
            suspect = suspect | pl.col(column).str.contains("(?i)" + self.names.pattern)
        mask = frame.select(suspect.fill_null(False)).to_series()
        if not mask.any():
            return frame
        values = frame[column].to_list()
        for i in mask.arg_true().to_list():
            values[i] = self.redact(values[i])
        return frame.with_columns(pl.Series(column, values, dtype=pl.String))


def _is_card(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn.is_valid(digits)
