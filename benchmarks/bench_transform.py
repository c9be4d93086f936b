"""validate + transform (clean, redact, conversations, split, exact + near dedup, tokens, exports) on N records.

Generates N WhatsApp-like message records (conversations of ~20 messages, 5% media/system, 3% with an
e-mail/phone/CPF, template replies that dedup must catch), then runs `validate_records` and
`build_examples` (documents off: no teacher) and prints seconds, rows/s and peak resident memory per stage.
Usage: `HF_HUB_OFFLINE=1 python benchmarks/bench_transform.py [--records 1000000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from tasks.config.data import DataConfig, ValidateConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.records import RECORD_SCHEMAS
from tasks.transform import build_examples
from tasks.validate import validate_records

WORDS = (  # noqa: SIM905
    "oi bom dia tudo bem queria saber sobre o plano anual com desconto entrega prazo frete cartão boleto pix "
    "parcelar pedido número produto tamanho cor azul preto disponível estoque loja amanhã hoje obrigado valeu "
    "claro temos sim não infelizmente posso ajudar mais alguma coisa confirmo enviado código rastreio"
).split()
TEMPLATES = ["Obrigado pelo contato! Qualquer dúvida estamos por aqui.", "Seu pedido foi enviado, segue o rastreio."]
PII = ["meu email é cliente{i}@example.com", "me liga (11) 9{i:04d}-4321", "CPF 529.982.247-25"]


def make_records(n: int, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_conversation = 20
    conversation = np.arange(n) // per_conversation
    position = np.arange(n) % per_conversation
    # customer and agent alternate, with a 25% chance that the same side writes twice
    side = (position + (rng.random(n) < 0.25).cumsum()) % 2
    lengths = rng.integers(4, 25, size=n)
    vocab = np.array(WORDS)
    texts = [" ".join(vocab[rng.integers(0, len(vocab), size=k)]) for k in lengths]
    roll = rng.random(n)
    for i in np.flatnonzero(roll < 0.03):
        texts[i] = f"{texts[i]} {PII[i % 3].format(i=i % 10000)}"
    # template exchanges ("oi, tudo bem?" → the same canned reply) that dedup should thin out
    for i in np.flatnonzero((side == 1) & (roll > 0.9) & (position > 0)):
        texts[i] = TEMPLATES[i % 2]
        texts[i - 1] = "oi tudo bem" if i % 2 else "quero o código de rastreio do meu pedido"
    kind = np.where(roll > 0.95, "media", "text")
    start = dt.datetime(2024, 1, 1)
    frame = pl.DataFrame(
        {
            "source": "whatsapp",
            "origin": [f"chats.txt#line={i + 1}" for i in range(n)],
            "file": "chats.txt",
            "line": np.arange(1, n + 1),
            "conversation_id": [f"c{c}" for c in conversation],
            "timestamp": [
                start + dt.timedelta(minutes=int(c) * 7 + int(p)) for c, p in zip(conversation, position, strict=True)
            ],
            "sender": np.where(side == 1, "Loja Afinar", "Cliente"),
            "text": np.where(kind == "media", "<Mídia oculta>", np.array(texts, dtype=object)),
            "kind": kind,
        },
        schema=RECORD_SCHEMAS["whatsapp"],
    )
    out.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out / "whatsapp.parquet")


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cache", default="work/cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        make_records(args.records, work / "records")
        print(f"generated {args.records:,} records in {time.perf_counter() - start:.1f} s (peak {peak_gb():.2f} GB)")

        start = time.perf_counter()
        validated = validate_records(work / "records", ValidateConfig(), work / "validate")
        validate_s = time.perf_counter() - start
        print(f"validate: {validated.rows_in:,} records in {validate_s:.1f} s "
              f"({validated.rows_in / validate_s:,.0f} rows/s), peak {peak_gb():.2f} GB")  # fmt: skip

        data = DataConfig()
        data.extract.assistant_senders = ["Loja Afinar"]
        data.transform.documents_as = "text"
        data.transform.budget_epochs = 1.0
        start = time.perf_counter()
        report = build_examples(
            work / "validate" / "records", data, ModelConfig(), TeacherConfig(), Path(args.cache), work / "t", seed=42
        )
        transform_s = time.perf_counter() - start
        total = validate_s + transform_s
        rate = args.records / transform_s
        print(f"transform: {args.records:,} records → {report.rows_in:,} candidates → {report.rows_out:,} "
              f"examples in {transform_s:.1f} s ({rate:,.0f} records/s), peak {peak_gb():.2f} GB")  # fmt: skip
        m = report.metrics
        print(f"  deduplicated exact {m['exact_dedup_deduplicated']:,.0f}, near {m['near_dedup_deduplicated']:,.0f}; "
              f"quarantined {report.rows_quarantined:,}; redacted email {m['redacted_email']:.0f} "
              f"phone {m['redacted_phone']:.0f} cpf {m['redacted_cpf']:.0f}; "
              f"tokens {m['tokens_total']:,.0f}")  # fmt: skip
        print(f"validate+transform: {args.records:,} records in {total:.1f} s = {args.records / total:,.0f} records/s; "
              f"peak resident memory {peak_gb():.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
