"""Conversations: roles, sessions, merged turns, context window, preference pairs from outcomes."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tasks.config.data import TransformConfig
from tasks.records import RECORD_SCHEMAS
from tasks.transform.conversations import (
    assign_roles,
    build_turns,
    conversation_candidates,
    messages_from_records,
    preference_pairs,
)

T0 = dt.datetime(2024, 5, 1, 10, 0)


def chat(conversation: str, lines: list[tuple[str, str]], outcome: str | None = None) -> pl.DataFrame:
    rows = [
        {"source": "crm", "origin": f"crm.csv#row={i}", "file": "crm.csv", "row": i, "conversation_id": conversation,
         "timestamp": T0 + dt.timedelta(minutes=i), "author": author, "text": text, "outcome": outcome, "extra": None}
        for i, (author, text) in enumerate(lines)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=RECORD_SCHEMAS["crm"])


def candidates(crm: pl.DataFrame, cfg: TransformConfig, senders: list[str]) -> pl.DataFrame:
    empty = pl.DataFrame(schema=RECORD_SCHEMAS["whatsapp"])
    return conversation_candidates(build_turns(assign_roles(messages_from_records(crm, empty), senders), cfg), cfg)


def test_without_configured_senders_the_most_active_sender_is_the_assistant() -> None:
    crm = chat("c1", [("Bia", "Oi"), ("Loja", "Olá!"), ("Bia", "Tem azul?"), ("Loja", "Tem sim."), ("Loja", "Quer?")])
    out = candidates(crm, TransformConfig(), [])
    assert out["output"].to_list() == ["Olá!", "Tem sim.\nQuer?"]


def test_context_is_limited_to_the_last_turns_and_labelled_by_role() -> None:
    lines = [("c", "p1"), ("a", "r1"), ("c", "p2"), ("a", "r2"), ("c", "p3"), ("a", "r3")]
    out = candidates(chat("c1", lines), TransformConfig(context_turns=3, user_label="Cliente",
                                                        assistant_label="Atendente"), ["A"])  # fmt: skip
    assert out["input"].to_list()[-1] == "Cliente: p2\nAtendente: r2\nCliente: p3"
    assert out["origin"].to_list() == ["crm.csv#row=1", "crm.csv#row=3", "crm.csv#row=5"]


def test_an_assistant_turn_opening_a_session_is_not_a_candidate() -> None:
    out = candidates(chat("c1", [("a", "Promoção hoje!"), ("c", "Quanto?"), ("a", "R$ 10")]), TransformConfig(), ["a"])
    assert out["output"].to_list() == ["R$ 10"]


def test_won_and_lost_replies_to_similar_questions_become_a_preference_pair() -> None:
    crm = pl.concat([
        chat("won", [("c", "Quanto custa o plano Pro para 5 usuários?"), ("a", "R$ 450/mês com suporte.")], "Won"),
        chat("lost", [("c", "quanto custa o plano pro p/ 5 usuarios"), ("a", "Veja no site.")], "lost"),
    ])  # fmt: skip
    found = candidates(crm, TransformConfig(), ["a"]).with_columns(pl.lit("train").alias("split"))
    pairs = preference_pairs(found, TransformConfig())
    assert pairs.select("chosen", "rejected").rows() == [("R$ 450/mês com suporte.", "Veja no site.")]
    assert pairs["prompt"].item().endswith("Customer: Quanto custa o plano Pro para 5 usuários?")
    # never across splits: a test conversation does not pair with a train one
    split = found.with_columns(pl.when(pl.col("outcome") == "lost").then(pl.lit("test")).otherwise(pl.col("split"))
                               .alias("split"))  # fmt: skip
    assert preference_pairs(split, TransformConfig()).is_empty()
