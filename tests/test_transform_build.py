"""build_examples end to end on small real-looking records: accounting, privacy, splits, dedup, files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import polars as pl
import pytest

from tasks.chat_format import count_tokens
from tasks.config.data import DataConfig
from tasks.config.teacher import TeacherConfig
from tasks.records import EXAMPLE_SCHEMA, RECORD_SCHEMAS
from tasks.transform import OverLengthError, build_examples
from tasks.transform.split import assign_splits

RECORDS = Path(__file__).parent / "data" / "transform" / "records"
SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}


def records_dir(tmp_path: Path, extra: dict[str, list[dict[str, object]]] | None = None) -> Path:
    """The fixture records (tests/data/transform/records/*.jsonl) as validated parquet files, plus `extra` rows."""
    out = tmp_path / "records"
    out.mkdir(parents=True, exist_ok=True)
    kinds = {p.stem for p in RECORDS.glob("*.jsonl")} | set(extra or {})
    for kind in kinds:
        path = RECORDS / f"{kind}.jsonl"
        frame = pl.read_ndjson(path, schema=RECORD_SCHEMAS[kind]) if path.is_file() else None
        rows = pl.DataFrame((extra or {}).get(kind, []), schema=RECORD_SCHEMAS[kind])
        pl.concat([f for f in (frame, rows) if f is not None]).write_parquet(out / f"{kind}.parquet")
    return out


def demo_data(**transform: object) -> DataConfig:
    data = DataConfig()
    data.extract.assistant_senders = ["Loja Afinar", "Ana (Vendas)", "Afinar Sales"]
    data.transform.documents_as = "text"  # the teacher path has its own (slow) test
    data.transform.budget_epochs = 2.0
    for key, value in transform.items():
        setattr(data.transform, key, value)
    return data


def run(tmp_path: Path, model_cfg, model_cache: Path, data: DataConfig | None = None, extra=None):
    out = tmp_path / "transform"
    report = build_examples(
        records_dir(tmp_path, extra), data or demo_data(), model_cfg, TeacherConfig(), model_cache, out, seed=42
    )
    return report, out


def dataset_row(line: int, instruction: str, output: str, file: str = "faq.jsonl") -> dict[str, object]:
    return {"source": "dataset", "origin": f"{file}#line={line}", "file": file, "line": line, "system": None,
            "instruction": instruction, "input": "", "output": output}  # fmt: skip


def test_counts_add_up_in_the_report_every_step_and_the_files(tmp_path, model_cfg, model_cache) -> None:
    report, out = run(tmp_path, model_cfg, model_cache)
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_deduplicated
    assert report.rows_out == pl.read_parquet(out / "examples.parquet").height
    assert report.rows_quarantined == pl.read_parquet(out / "quarantine.parquet").height
    assert report.rows_deduplicated == pl.read_parquet(out / "duplicates.parquet").height
    steps = ["assemble", "clean", "exact_dedup", "near_dedup", "length"]
    for step in steps:
        m = {p: report.metrics[f"{step}_{p}"] for p in ("in", "out", "quarantined", "deduplicated")}
        assert m["in"] == m["out"] + m["quarantined"] + m["deduplicated"], step
    for before, after in itertools.pairwise(steps):
        assert report.metrics[f"{before}_out"] == report.metrics[f"{after}_in"]
    assert report.metrics["assemble_in"] == report.rows_in
    assert report.metrics["records_in"] == 25 and report.metrics["records_not_text"] == 3
    assert report.rows_deduplicated == 1  # the repeated alpaca row


def test_every_quarantined_row_carries_reason_and_origin(tmp_path, model_cfg, model_cache) -> None:
    _, out = run(tmp_path, model_cfg, model_cache)
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    assert quarantine.height >= 1
    assert quarantine.filter(pl.col("reason").is_null() | pl.col("origin").is_null()).is_empty()
    reasons = dict(zip(quarantine["origin"], quarantine["reason"], strict=True))
    assert reasons["crm_export.csv#row=8"] == "output_shorter_than_2_chars"  # the reply "!"


def test_examples_follow_the_contract_and_count_tokens_under_the_chat_template(
    tmp_path, model_cfg, model_cache, tokenizer
) -> None:
    _, out = run(tmp_path, model_cfg, model_cache)
    examples = pl.read_parquet(out / "examples.parquet")
    assert examples.schema == pl.Schema(EXAMPLE_SCHEMA)
    assert not examples["synthetic"].any() and examples["id"].is_unique().all()
    for row in examples.iter_rows(named=True):
        assert row["n_tokens"] == count_tokens(tokenizer, row), row["origin"]


def test_personal_data_is_redacted_but_ordinary_numbers_stay(tmp_path, model_cfg, model_cache) -> None:
    data = demo_data(redact_names=["Mariana"])
    report, out = run(tmp_path, model_cfg, model_cache, data)
    text = " ".join(
        " ".join(str(v) for v in r.values()) for r in pl.read_parquet(out / "examples.parquet").iter_rows(named=True)
    )
    for secret in ("529.982.247-25", "mariana.souza@example.com", "98765-4321", "4111 1111 1111 1111", "Mariana"):
        assert secret not in text
    assert "123.456.789-00" in text  # a wrong check digit: an order number, not a CPF
    assert "[CPF]" in text and "[EMAIL]" in text and "[PHONE]" in text and "[CARD]" in text and "[NAME]" in text
    assert report.metrics["redacted_cpf"] == 1 and report.metrics["redacted_card"] == 1
    for export in (out / "exports").iterdir():
        assert "529.982.247-25" not in export.read_text()


def test_replies_are_targets_but_media_system_and_deleted_messages_never_are(tmp_path, model_cfg, model_cache) -> None:
    _, out = run(tmp_path, model_cfg, model_cache)
    examples = pl.read_parquet(out / "examples.parquet").filter(pl.col("source") == "whatsapp")
    outputs = examples["output"].to_list()
    assert outputs[0].startswith("Bom dia") and len(outputs) == 3
    text = " ".join(outputs + examples["input"].to_list())
    assert "Mídia oculta" not in text and "apagada" not in text and "criptografia" not in text
    # consecutive customer messages were merged into one turn, labelled by role, not by name
    first = examples.filter(pl.col("origin") == "chat_loja.txt#line=4").row(0, named=True)
    assert (
        first["input"]
        == "Customer: Oi, bom dia! Vocês têm o plano anual com desconto?\nMeu CPF é [CPF] e meu e-mail [EMAIL]"
    )


def test_a_long_silence_starts_a_new_session_without_the_old_context(tmp_path, model_cfg, model_cache) -> None:
    _, out = run(tmp_path, model_cfg, model_cache)
    next_day = pl.read_parquet(out / "examples.parquet").filter(pl.col("origin") == "chat_loja.txt#line=9")
    assert next_day["input"].item() == "Customer: Voltei! Fechei o plano ontem, obrigada"


def test_no_conversation_or_document_spans_two_splits(tmp_path, model_cfg, model_cache) -> None:
    extra = []
    for c in range(40):
        for turn in range(4):
            sender = "Loja Afinar" if turn % 2 else f"Cliente {c}"
            extra.append({
                "source": "whatsapp", "origin": f"chats.txt#line={c * 10 + turn + 1}", "file": "chats.txt",
                "line": c * 10 + turn + 1, "conversation_id": f"conversa-{c}",
                "timestamp": f"2024-05-01T10:{turn:02d}:00", "sender": sender,
                "text": f"Mensagem {turn} da conversa {c} sobre o produto {c * 7 + turn}", "kind": "text",
            })  # fmt: skip
    extra = [{**r, "timestamp": __import__("datetime").datetime.fromisoformat(r["timestamp"])} for r in extra]
    _, out = run(tmp_path, model_cfg, model_cache, extra={"whatsapp": extra})
    examples = pl.read_parquet(out / "examples.parquet").filter(pl.col("origin").str.starts_with("chats.txt"))
    examples = examples.with_columns(pl.col("input").str.extract(r"da conversa (\d+)").alias("group"))
    assert examples.height == 80 and examples["group"].n_unique() == 40
    spans = examples.group_by("group").agg(pl.col("split").n_unique())
    assert spans["split"].max() == 1
    assert set(examples["split"]) == {"train", "val", "test"}


def test_a_near_duplicate_of_a_test_row_is_removed_from_train(tmp_path, model_cfg, model_cache) -> None:
    keys = {line: f"dataset:faq.jsonl:{line}" for line in range(1, 200)}
    split = assign_splits(list(keys.values()), SHARES)
    test_line = next(line for line, key in keys.items() if split[key] == "test")
    train_line = next(line for line, key in keys.items() if split[key] == "train")
    question = "Como faço para cancelar minha assinatura do plano anual antes do fim do contrato sem pagar multa?"
    answer = "Acesse Configurações, depois Assinatura, e clique em Cancelar; sem multa nos primeiros 30 dias."
    extra = {"dataset": [
        dataset_row(test_line, question, answer),
        dataset_row(train_line, question.replace("minha assinatura", "a minha assinatura"), answer),
    ]}  # fmt: skip
    report, out = run(tmp_path, model_cfg, model_cache, extra=extra)
    examples = pl.read_parquet(out / "examples.parquet")
    assert examples.filter(pl.col("origin") == f"faq.jsonl#line={test_line}")["split"].to_list() == ["test"]
    assert examples.filter(pl.col("origin") == f"faq.jsonl#line={train_line}").is_empty()
    dup = pl.read_parquet(out / "duplicates.parquet").filter(pl.col("origin") == f"faq.jsonl#line={train_line}")
    assert dup.row(0, named=True) | {"similarity": 0} == {
        "step": "near_dedup", "source": "dataset", "origin": f"faq.jsonl#line={train_line}", "split": "train",
        "duplicate_of": f"faq.jsonl#line={test_line}", "duplicate_of_split": "test", "similarity": 0,
    }  # fmt: skip
    assert report.metrics["near_dedup_deduplicated"] >= 1


def test_keep_outcomes_quarantines_the_other_conversations_with_their_outcome(tmp_path, model_cfg, model_cache) -> None:
    report, out = run(tmp_path, model_cfg, model_cache, demo_data(keep_outcomes=["won"]))
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    assert quarantine.filter(pl.col("reason") == "outcome_not_kept:lost")["origin"].to_list() == [
        "crm_export.csv#row=4"
    ]
    assert report.metrics["outcome_quarantined"] == 1
    # conversations without an outcome (WhatsApp) are kept
    assert pl.read_parquet(out / "examples.parquet").filter(pl.col("source") == "whatsapp").height == 3


@pytest.mark.parametrize("policy", ["truncate", "drop", "fail"])
def test_the_over_length_policy_is_applied_and_counted(tmp_path, model_cfg, model_cache, policy) -> None:
    data = demo_data(max_tokens=100, over_length=policy)
    if policy == "fail":
        with pytest.raises(OverLengthError, match=r"exceed data.transform.max_tokens=100, e.g. \S+#"):
            run(tmp_path, model_cfg, model_cache, data)
        return
    report, out = run(tmp_path, model_cfg, model_cache, data)
    examples = pl.read_parquet(out / "examples.parquet")
    assert report.metrics["over_length"] >= 3
    assert examples["n_tokens"].max() <= 100
    if policy == "drop":
        dropped = pl.read_parquet(out / "quarantine.parquet").filter(pl.col("reason").str.starts_with("over_length"))
        assert dropped.height == report.metrics["over_length"] == report.metrics["length_quarantined"]
    else:
        assert report.metrics["truncated"] + report.metrics["length_quarantined"] == report.metrics["over_length"]
        # the oldest context went first: the customer's last words survive
        cut = examples.filter(pl.col("origin") == "chat_loja.txt#line=7")
        assert cut.height == 0 or cut["input"].item().endswith("O número do pedido é 123.456.789-00")


def test_artifacts_exist_and_the_report_names_counts_and_cost(tmp_path, model_cfg, model_cache) -> None:
    report, out = run(tmp_path, model_cfg, model_cache)
    for name, rel in report.artifacts.items():
        assert (out / rel).is_file(), name
    for split in ("train", "val", "test"):
        for fmt in ("openai.jsonl", "alpaca.json", "sharegpt.jsonl"):
            assert report.artifacts[f"exports/{split}.{fmt.split('.')[0]}"] == f"exports/{split}.{fmt}"
    md = (out / "report.md").read_text()
    assert "| exact_dedup | 11 | 10 | 0 | 1 |" in md and "token_lengths.png" in md
    assert f"× 2 epochs = {report.metrics['train_tokens_x_epochs']:,} tokens" in md
    assert (out / "token_lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert report.metrics["train_tokens_x_epochs"] == 2 * report.metrics["tokens_train"]


def test_preference_pairs_from_won_and_lost_replies_and_preference_records(tmp_path, model_cfg, model_cache) -> None:
    extra = {
        "preference": [
            {
                "source": "preference",
                "origin": "prefs.jsonl#line=1",
                "file": "prefs.jsonl",
                "line": 1,
                "prompt": "Ligue para (11) 98765-4321?",
                "chosen": "Claro!",
                "rejected": "Não.",
            }
        ]
    }
    _, out = run(tmp_path, model_cfg, model_cache, extra=extra)
    pairs = pl.read_parquet(out / "preference.parquet")
    from_records = pairs.filter(pl.col("origin") == "prefs.jsonl#line=1").row(0, named=True)
    assert from_records["prompt"] == "Ligue para [PHONE]?" and from_records["split"] in SHARES
    assert json.dumps(pairs.columns) == json.dumps(["id", "system", "prompt", "chosen", "rejected", "source",
                                                    "origin", "split"])  # fmt: skip


def test_sessions_of_one_whatsapp_chat_are_split_units_and_never_span_two_splits(
    tmp_path, model_cfg, model_cache
) -> None:
    from datetime import datetime, timedelta

    start = datetime(2024, 5, 1, 10, 0)
    extra = []
    for day in range(40):  # one chat export, a conversation a day: days apart, so 40 sessions
        for turn in range(4):
            line = day * 10 + turn + 1
            extra.append({
                "source": "whatsapp", "origin": f"loja.txt#line={line}", "file": "loja.txt", "line": line,
                "conversation_id": "loja", "timestamp": start + timedelta(days=day, minutes=turn),
                "sender": "Loja Afinar" if turn % 2 else f"Cliente {day}",
                "text": f"Mensagem {turn} do dia {day} sobre o produto {day * 7 + turn}", "kind": "text",
            })  # fmt: skip
    _, out = run(tmp_path, model_cfg, model_cache, extra={"whatsapp": extra})
    examples = pl.read_parquet(out / "examples.parquet").filter(pl.col("origin").str.starts_with("loja.txt"))
    examples = examples.with_columns(pl.col("input").str.extract(r"do dia (\d+)").alias("session"))
    assert examples["session"].n_unique() == 40
    assert examples.group_by("session").agg(pl.col("split").n_unique())["split"].max() == 1
    assert set(examples["split"]) == {"train", "val", "test"}
