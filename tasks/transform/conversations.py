"""Conversations (CRM interactions, WhatsApp chats) → one candidate example per assistant reply.

Messages are sorted inside each conversation, cut into sessions where the gap between two
messages exceeds `session_gap_minutes`, and consecutive messages of the same side are merged into
one turn. Each assistant turn that answers a customer turn becomes a candidate: the configured
instruction, the last `context_turns` turns (labelled by role, never by name) as `input`, the reply
as `output`. Media, system and deleted messages never become a target or context.
"""

from __future__ import annotations

import polars as pl
from rapidfuzz import fuzz, process

from tasks.config.data import TransformConfig
from tasks.transform.clean import normalised_for_matching

MESSAGE_COLUMNS = {
    "source": pl.String,
    "origin": pl.String,
    "file": pl.String,
    "conversation_id": pl.String,
    "timestamp": pl.Datetime("us"),
    "position": pl.Int64,
    "speaker": pl.String,
    "text": pl.String,
    "kind": pl.String,
    "outcome": pl.String,
}

# fuzzy matching of won/lost replies compares every pair: above this many comparisons, exact matches only
MAX_FUZZY_COMPARISONS = 20_000_000


def messages_from_records(crm: pl.DataFrame, whatsapp: pl.DataFrame) -> pl.DataFrame:
    """CRM and WhatsApp records in one shape: one row per message, with a conversation `group` key."""
    frames = [
        crm.select(
            "source",
            "origin",
            "file",
            "conversation_id",
            "timestamp",
            pl.col("row").alias("position"),
            pl.col("author").alias("speaker"),
            "text",
            pl.lit("text").alias("kind"),
            "outcome",
        ),
        whatsapp.select(
            "source",
            "origin",
            "file",
            "conversation_id",
            "timestamp",
            pl.col("line").alias("position"),
            pl.col("sender").alias("speaker"),
            "text",
            "kind",
            pl.lit(None, pl.String).alias("outcome"),
        ),
    ]
    messages = pl.concat([f.cast(MESSAGE_COLUMNS) for f in frames])  # type: ignore[arg-type]
    return messages.with_columns(
        pl.format("{}:{}:{}", "source", "file", pl.col("conversation_id").fill_null("")).alias("group")
    )


def assign_roles(messages: pl.DataFrame, assistant_senders: list[str]) -> pl.DataFrame:
    """`role` per message: assistant for the configured senders, else the most active sender per conversation."""
    speaker = pl.col("speaker").fill_null("").str.strip_chars().str.to_lowercase()
    if assistant_senders:
        wanted = [s.strip().lower() for s in assistant_senders]
        is_assistant = speaker.is_in(wanted)
    else:
        counts = (
            messages.filter(pl.col("kind") == "text")
            .group_by("group", speaker.alias("_speaker"))
            .len()
            .sort(["group", "len", "_speaker"], descending=[False, True, False])
            .group_by("group", maintain_order=True)
            .first()
            .select("group", pl.col("_speaker").alias("_assistant"))
        )
        messages = messages.join(counts, on="group", how="left")
        is_assistant = speaker == pl.col("_assistant")
    messages = messages.with_columns(
        pl.when(is_assistant).then(pl.lit("assistant")).otherwise(pl.lit("user")).alias("role")
    )
    return messages.drop("_assistant", strict=False)


def build_turns(messages: pl.DataFrame, cfg: TransformConfig) -> pl.DataFrame:
    """Text messages → turns: sorted, cut into sessions by time gaps, same-side messages merged."""
    gap = pl.duration(minutes=cfg.session_gap_minutes)
    text = messages.filter(pl.col("kind") == "text").sort(["group", "timestamp", "position"], nulls_last=True)
    since_last = pl.col("timestamp") - pl.col("timestamp").shift(1).over("group")
    text = text.with_columns(
        (since_last > gap).fill_null(False).cum_sum().over("group").alias("session"),
    ).with_columns(pl.format("{}#{}", "group", "session").alias("session_key"))
    text = text.with_columns(
        (pl.col("role") != pl.col("role").shift(1).over("session_key"))
        .fill_null(True)
        .cum_sum()
        .over("session_key")
        .alias("turn")
    )
    outcome = (
        messages.filter(pl.col("outcome").is_not_null())
        .group_by("group")
        .agg(pl.col("outcome").last().str.strip_chars().str.to_lowercase().alias("conversation_outcome"))
    )
    turns = text.group_by("session_key", "turn", maintain_order=True).agg(
        pl.col("group").first(),
        pl.col("source").first(),
        pl.col("role").first(),
        pl.col("origin").first(),
        pl.col("text").str.join("\n"),
        pl.len().alias("messages"),
    )
    return turns.join(outcome, on="group", how="left")


def conversation_candidates(turns: pl.DataFrame, cfg: TransformConfig) -> pl.DataFrame:
    """One candidate per assistant turn that answers a customer turn (columns of `CANDIDATE_COLUMNS`)."""
    label = pl.when(pl.col("role") == "assistant").then(pl.lit(cfg.assistant_label)).otherwise(pl.lit(cfg.user_label))
    turns = turns.with_columns(pl.format("{}: {}", label, pl.col("text")).alias("line"))
    context = pl.concat_str(
        [pl.col("line").shift(i).over("session_key") for i in range(max(cfg.context_turns, 1), 0, -1)],
        separator="\n",
        ignore_nulls=True,
    )
    previous_role = pl.col("role").shift(1).over("session_key")
    previous_text = pl.col("text").shift(1).over("session_key")
    return (
        turns.with_columns(
            context.alias("input"),
            previous_role.alias("_previous_role"),
            pl.concat_str([previous_text, pl.col("text")], separator="\n").alias("key_text"),
        )
        .filter((pl.col("role") == "assistant") & (pl.col("_previous_role") == "user"))
        .select(
            pl.lit(None, pl.String).alias("system"),
            pl.lit(cfg.instruction).alias("instruction"),
            "input",
            pl.col("text").alias("output"),
            "source",
            "origin",
            # a WhatsApp export is one chat holding many conversations over months (a group chat, many
            # customers): its sessions are the units kept whole in one split; a CRM deal stays whole
            pl.when(pl.col("source") == "whatsapp").then("session_key").otherwise("group").alias("group"),
            "key_text",
            pl.col("conversation_outcome").alias("outcome"),
        )
    )


def preference_pairs(candidates: pl.DataFrame, cfg: TransformConfig) -> pl.DataFrame:
    """prompt/chosen/rejected from won vs lost conversations, matched on the customer's last message.

    The prompt is the won conversation's (instruction + context); the rejected reply answered a
    customer message at least `pair_min_similarity` similar (rapidfuzz) in a lost conversation of
    the same split. Exact matches first; fuzzy matching only while the comparisons stay bounded.
    """
    good = [o.lower() for o in cfg.good_outcomes]
    bad = [o.lower() for o in cfg.bad_outcomes]
    asked = normalised_for_matching(pl.col("key_text").str.split("\n").list.first()).alias("_asked")
    won = candidates.filter(pl.col("outcome").is_in(good)).with_columns(asked)
    lost = candidates.filter(pl.col("outcome").is_in(bad)).with_columns(asked)
    pairs: list[dict[str, str | None]] = []
    for split in won["split"].unique().sort().to_list():
        w = won.filter(pl.col("split") == split)
        lo = lost.filter(pl.col("split") == split)
        if w.is_empty() or lo.is_empty():
            continue
        fuzzy = w.height * lo.height <= MAX_FUZZY_COMPARISONS
        choices = lo["_asked"].to_list()
        for row in w.iter_rows(named=True):
            if fuzzy:
                match = process.extractOne(
                    row["_asked"], choices, scorer=fuzz.token_set_ratio, score_cutoff=cfg.pair_min_similarity
                )
            else:
                match = (row["_asked"], 100.0, choices.index(row["_asked"])) if row["_asked"] in choices else None
            if match is None:
                continue
            rejected = lo.row(match[2], named=True)
            if rejected["output"].strip() == row["output"].strip():
                continue
            pairs.append(
                {
                    "system": row["system"],
                    "prompt": f"{row['instruction']}\n\n{row['input']}".strip(),
                    "chosen": row["output"],
                    "rejected": rejected["output"],
                    "source": row["source"],
                    "origin": f"{row['origin']} vs {rejected['origin']}",
                    "split": split,
                }
            )
    return pl.DataFrame(pairs, schema=PREFERENCE_COLUMNS)


PREFERENCE_COLUMNS = {
    "system": pl.String,
    "prompt": pl.String,
    "chosen": pl.String,
    "rejected": pl.String,
    "source": pl.String,
    "origin": pl.String,
    "split": pl.String,
}
