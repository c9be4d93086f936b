"""Documents: token-aware chunks on paragraph/cue boundaries with overlap; questions from the teacher."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pytest

from tasks.config.data import DataConfig, TransformConfig
from tasks.config.teacher import TeacherConfig
from tasks.records import RECORD_SCHEMAS
from tasks.transform import build_examples
from tasks.transform.documents import (
    Unit,
    chunk_document,
    document_units,
    parse_questions,
    quote_answer,
    unwrap_lines,
)

PARAGRAPHS = [
    f"Parágrafo {i}: o Afinar lê exportações de CRM, conversas de WhatsApp e manuais em PDF, "
    f"e transforma tudo em exemplos de treino com a origem de cada linha registrada."
    for i in range(12)
]


def test_chunks_respect_the_token_budget_and_paragraph_boundaries(tokenizer) -> None:
    cfg = TransformConfig(chunk_tokens=180, chunk_overlap_tokens=60)  # paragraphs: 55 tokens
    units = [Unit(p, f"page={1 + i // 4}") for i, p in enumerate(PARAGRAPHS)]
    chunks = chunk_document(tokenizer, "pdf", "manual.pdf", units, cfg)
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"]) <= 180
        assert all(part in PARAGRAPHS for part in chunk.text.split("\n\n"))  # whole paragraphs only
    # each chunk opens with the last paragraph of the previous one (the overlap)
    for before, after in itertools.pairwise(chunks):
        assert after.text.split("\n\n")[0] == before.text.split("\n\n")[-1]
    assert chunks[0].origin == "manual.pdf#page=1" and chunks[-1].origin.startswith("manual.pdf#page=")
    assert {p for c in chunks for p in c.text.split("\n\n")} == set(PARAGRAPHS)  # nothing left out


def test_a_paragraph_longer_than_a_chunk_is_cut_at_sentences(tokenizer) -> None:
    cfg = TransformConfig(chunk_tokens=60, chunk_overlap_tokens=0)
    long = " ".join(f"Esta é a frase número {i} do parágrafo muito longo." for i in range(30))
    chunks = chunk_document(tokenizer, "pdf", "a.pdf", [Unit(long, "page=1")], cfg)
    assert len(chunks) > 3
    assert all(c.text.endswith(".") for c in chunks)
    assert all(len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 60 for c in chunks)


def test_pages_split_into_paragraphs_and_cues_keep_their_speaker() -> None:
    pdf = pl.DataFrame([{"source": "pdf", "origin": "m.pdf#page=2", "file": "m.pdf", "page": 2, "text": "A\n\nB"},
                        {"source": "pdf", "origin": "m.pdf#page=1", "file": "m.pdf", "page": 1, "text": "Z"}],
                       schema=RECORD_SCHEMAS["pdf"])  # fmt: skip
    vtt = pl.DataFrame([{"source": "transcript", "origin": "r.vtt#cue=1", "file": "r.vtt", "cue": 1, "start_s": 0.0,
                         "end_s": 1.0, "speaker": "Carlos", "text": "Bom dia."}],
                       schema=RECORD_SCHEMAS["transcript"])  # fmt: skip
    docs = document_units(pdf, vtt)
    assert [(u.text, u.locator) for u in docs[("pdf", "m.pdf")]] == [("Z", "page=1"), ("A", "page=2"), ("B", "page=2")]
    assert docs[("transcript", "r.vtt")][0].text == "Carlos: Bom dia."


def test_questions_are_parsed_from_numbered_or_prefixed_lines() -> None:
    reply = "Text:\nManual\n\nQuestion: How do I install afinar?\n2) Pergunta: Onde fica o suporte?\nno question here"
    assert parse_questions(reply, 5) == ["How do I install afinar?", "Pergunta: Onde fica o suporte?"]
    assert parse_questions(reply, 1) == ["How do I install afinar?"]


def test_a_quoted_answer_keeps_the_documents_own_sentences() -> None:
    chunk = "O Afinar roda offline. A instalação usa pip install afinar. O suporte responde em um dia útil."
    assert quote_answer("Como é a instalação?", chunk, max_sentences=1) == "A instalação usa pip install afinar."


@pytest.mark.slow
def test_the_embedded_teacher_writes_questions_for_a_redacted_chunk(tmp_path: Path, model_cfg, model_cache) -> None:
    records = tmp_path / "records"
    records.mkdir()
    text = ("O Afinar transforma os dados da sua empresa em um modelo ajustado que roda na sua máquina. "
            "Para instalar, execute pip install afinar. Suporte: suporte@afinar.example.")  # fmt: skip
    pl.DataFrame([{"source": "pdf", "origin": "m.pdf#page=1", "file": "m.pdf", "page": 1, "text": text}],
                 schema=RECORD_SCHEMAS["pdf"]).write_parquet(records / "pdf.parquet")  # fmt: skip
    data = DataConfig()
    data.transform.questions_per_chunk = 1
    report = build_examples(records, data, model_cfg, TeacherConfig(), model_cache, tmp_path / "out", seed=42)
    assert report.metrics["teacher_calls"] == 1 and report.rows_in == 1
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_deduplicated
    examples = pl.read_parquet(tmp_path / "out" / "examples.parquet")
    quarantine = pl.read_parquet(tmp_path / "out" / "quarantine.parquet")
    if examples.height:  # a tiny teacher may write no question: then the slot is quarantined, never lost
        row = examples.row(0, named=True)
        assert row["instruction"].endswith("?") and "[EMAIL]" in row["input"] and "@" not in row["input"]
    else:
        assert quarantine["reason"].to_list() == ["teacher_wrote_no_question"]
        assert "suporte@" not in quarantine["payload"].item()


def test_a_quoted_answer_never_just_repeats_the_question() -> None:
    chunk = "E as perdas? Quais foram os motivos principais? O preço foi o motivo principal das perdas."
    question = "E as perdas? Quais foram os motivos principais?"
    assert quote_answer(question, chunk, max_sentences=1) == "O preço foi o motivo principal das perdas."
    copied = "Isso remove resíduos da fabricação e o ar do circuito?"
    chunk = "Ligue a máquina. Isso remove resíduos da fabricação e o ar do circuito. Use água filtrada."
    assert "Isso remove" not in quote_answer(copied, chunk, max_sentences=2)


def test_pdf_line_wraps_are_joined_but_list_items_stay_on_their_lines() -> None:
    assert unwrap_lines("O manômetro\ndeve indicar entre 8 e 10 bar, sem descal-\ncificação.") == (
        "O manômetro deve indicar entre 8 e 10 bar, sem descalcificação."
    )
    assert unwrap_lines("Passos:\n1. Encha o reservatório\n2. Ligue") == "Passos:\n1. Encha o reservatório\n2. Ligue"
