"""Redaction: typed placeholders, check digits respected, counts per type."""

from __future__ import annotations

import polars as pl

from tasks.transform.clean import clean_text
from tasks.transform.redact import Redactor


def test_a_cpf_with_a_valid_check_digit_is_redacted_and_a_wrong_one_is_not() -> None:
    redactor = Redactor()
    assert redactor.redact("Meu CPF é 529.982.247-25.") == "Meu CPF é [CPF]."
    assert redactor.redact("O pedido é 529.982.247-24.") == "O pedido é 529.982.247-24."
    assert redactor.redact("cpf 52998224725 ok") == "cpf [CPF] ok"
    assert redactor.counts["cpf"] == 2


def test_cnpj_needs_valid_check_digits_too() -> None:
    redactor = Redactor()
    assert redactor.redact("CNPJ 11.222.333/0001-81") == "CNPJ [CNPJ]"
    assert redactor.redact("CNPJ 11.222.333/0001-82") == "CNPJ 11.222.333/0001-82"
    assert redactor.counts == {"cnpj": 1}


def test_phones_in_brazilian_and_international_formats_are_redacted() -> None:
    redactor = Redactor()
    text = "Ligue (11) 98765-4321, +55 21 3333-4444 ou +1 415-555-2671; WhatsApp 11987654321."
    assert redactor.redact(text) == "Ligue [PHONE], [PHONE] ou [PHONE]; WhatsApp [PHONE]."
    assert redactor.counts["phone"] == 4


def test_ordinary_numbers_stay() -> None:
    redactor = Redactor()
    text = "Em 2024 vendemos 150000 unidades; CEP 01310-100; protocolo 2024031512345; R$ 1.234,56."
    assert redactor.redact(text) == text
    assert not redactor.counts


def test_card_numbers_need_to_pass_luhn() -> None:
    redactor = Redactor()
    assert redactor.redact("cartão 4111 1111 1111 1111") == "cartão [CARD]"
    assert redactor.redact("cartão 4111 1111 1111 1112") == "cartão 4111 1111 1111 1112"
    assert redactor.counts == {"card": 1}


def test_emails_and_configured_names_get_typed_placeholders() -> None:
    redactor = Redactor(names=["Mariana Souza", "Mariana", "João"])
    out = redactor.redact("Oi mariana! Escreva para mariana.souza@example.com.br, diz a Mariana Souza ao JOÃO.")
    assert out == "Oi [NAME]! Escreva para [EMAIL], diz a [NAME] ao [NAME]."
    assert redactor.counts == {"email": 1, "name": 3}


def test_redacting_a_column_counts_per_type_and_leaves_other_rows_alone() -> None:
    frame = pl.DataFrame({"text": ["sem dados", "cpf 529.982.247-25", None, "a@b.co e (11) 98765-4321"]})
    redactor = Redactor(names=["Bia Lima"])
    out = redactor.redact_column(frame, "text")
    assert out["text"].to_list() == ["sem dados", "cpf [CPF]", None, "[EMAIL] e [PHONE]"]
    assert redactor.counts == {"cpf": 1, "email": 1, "phone": 1}


def test_cleaning_normalises_unicode_and_drops_invisible_characters() -> None:
    raw = "\u200e\ufeffOla\u0301,  mundo\u00a0!\r\n\r\n\r\n\tFim\u200b "
    out = pl.DataFrame({"t": [raw]}).select(clean_text("t")).item()
    assert out == "Olá, mundo !\n\nFim"
