"""WhatsApp chat exports (Android and iOS, .txt or inside the .zip) → one `whatsapp` record per message.

Handles the date/time layouts of English (US 12 h, UK 24 h), Portuguese (BR, PT), Spanish and German,
AM/PM spelt "PM", "p. m." or "p.m.", invisible marks anywhere in a line, multi-line messages, system
messages, media placeholders, deleted messages and senders that are phone numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from tasks.extract.detect import clean_line
from tasks.records import RECORD_SCHEMAS

HEADER = re.compile(
    r"^\[?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4})[,.]?\s+(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)"
    r"(?:\s*(?P<ampm>[AaPp])\.?\s?[Mm]\.?)?(?:\]\s*|\s[-–]\s)(?P<rest>.*)$"
)
MEDIA = re.compile(
    r"^(?:<?(?:media omitted|mídia oculta|arquivo de mídia oculto|multimédia omitida|multimedia omitido|"
    r"medien ausgeschlossen|medien weggelassen)>?|"
    r"(?:image|video|audio|sticker|gif|document|contact card|imagem|vídeo|áudio|figurinha|documento|"
    r"cartão de contato|imagen|sticker|bild|audio|dokument)\s+(?:omitted|omitida|omitido|ocultad[oa]|"
    r"weggelassen|ausgeschlossen)|null)$"
    r"|<(?:attached|anexado|adjunto|anhang|allegato):\s[^>]+>"
    r"|\((?:file attached|arquivo anexado|ficheiro anexado|archivo adjunto|datei angehängt)\)$",
    re.IGNORECASE,
)
DELETED = re.compile(
    r"^(?:this message was deleted|you deleted this message|esta mensagem foi apagada|"
    r"você apagou esta mensagem|mensagem apagada|esta mensagem foi eliminada|apagaste esta mensagem|"
    r"eliminaste esta mensagem|se eliminó este mensaje|eliminaste este mensaje|este mensaje fue eliminado|"
    r"diese nachricht wurde gelöscht|du hast diese nachricht gelöscht)\.?$",
    re.IGNORECASE,
)
SYSTEM = re.compile(
    r"end-to-end encrypted|ponta a ponta|ponto a ponto|extremo a extremo|ende-zu-ende|"
    r"changed (?:their phone number|the subject|this group|the group)|created group|joined using|"
    r"security code|mudou (?:o|seu) número|trocou (?:o|de) número|alterou o número|criou o grupo|"
    r"código de segurança|cambió (?:su|el) número|creó el grupo|sicherheitsnummer|nummer geändert|"
    r"hat die gruppe|is a contact|é um contato|disappearing messages|mensagens temporárias",
    re.IGNORECASE,
)
EDITED = re.compile(
    r"\s*<(?:this message was edited|mensagem editada|se editó este mensaje\.?|"
    r"diese nachricht wurde bearbeitet\.?)>\s*$",
    re.IGNORECASE,
)
MAX_SENDER = 60


@dataclass
class ChatResult:
    """Messages of one chat as records, lines that could not be parsed as quarantine rows."""

    records: pl.DataFrame
    quarantine: list[dict[str, object]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def date_order(dates: list[str], twelve_hour: bool) -> str:
    """ "ymd", "dmy" or "mdy" for a chat's dates: a part over 12 decides; else AM/PM means US month-first."""
    parts = [re.split(r"[./-]", d) for d in dates]
    if parts and all(len(p[0]) == 4 for p in parts):
        return "ymd"
    if any(int(p[0]) > 12 for p in parts):
        return "dmy"
    if any(int(p[1]) > 12 for p in parts):
        return "mdy"
    return "mdy" if twelve_hour else "dmy"


def to_datetime(date: str, time: str, ampm: str | None, order: str) -> datetime:
    """Build the (naive) datetime of a header; raises ValueError on an impossible date."""
    a, b, c = (int(x) for x in re.split(r"[./-]", date))
    year, month, day = {"ymd": (a, b, c), "dmy": (c, b, a), "mdy": (c, a, b)}[order]
    if year < 100:
        year += 2000
    hms = [int(x) for x in re.split(r"[:.]", time)]
    hour, minute, second = hms[0], hms[1], hms[2] if len(hms) > 2 else 0
    if ampm:
        if ampm.lower() == "p" and hour < 12:
            hour += 12
        elif ampm.lower() == "a" and hour == 12:
            hour = 0
    return datetime(year, month, day, hour, minute, second)


def message_kind(sender: str | None, text: str, marked: bool) -> str:
    """text | media | system | deleted, from the message's words; `marked`: iOS put U+200E before the text."""
    if sender is None:
        return "system"
    if DELETED.match(text):
        return "deleted"
    if MEDIA.search(text):
        return "media"
    if marked and SYSTEM.search(text):
        return "system"
    return "text"


def parse_whatsapp_export(text: str, name: str, conversation_id: str) -> ChatResult:
    """Parse a chat export's text into one record per message (origin `name#line=N` of the header line)."""
    headers: list[tuple[int, re.Match[str], str]] = []
    bodies: list[list[str]] = []
    orphans: list[tuple[int, str]] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = clean_line(raw)
        match = HEADER.match(line)
        if match:
            headers.append((line_no, match, raw))
            bodies.append([match.group("rest")])
        elif headers:
            bodies[-1].append(line)
        elif line.strip():
            orphans.append((line_no, raw))
    twelve_hour = any(m.group("ampm") for _, m, _ in headers)
    order = date_order([m.group("date") for _, m, _ in headers], twelve_hour)
    rows: list[dict[str, object]] = []
    quarantine: list[dict[str, object]] = [
        {"source": "whatsapp", "origin": f"{name}#line={n}", "reason": "text before the first message header",
         "payload": raw}
        for n, raw in orphans
    ]  # fmt: skip
    for (line_no, match, raw_line), body in zip(headers, bodies, strict=True):
        origin = f"{name}#line={line_no}"
        message = "\n".join(body).rstrip()
        try:
            timestamp = to_datetime(match.group("date"), match.group("time"), match.group("ampm"), order)
        except ValueError as exc:
            quarantine.append({"source": "whatsapp", "origin": origin, "reason": f"impossible date ({exc})",
                               "payload": message})  # fmt: skip
            continue
        sender: str | None = None
        content = message
        head, sep, tail = message.partition(": ")
        if sep and 0 < len(head) <= MAX_SENDER and "\n" not in head:
            sender, content = head.strip(), tail
        elif message.endswith(":") and 0 < len(message) - 1 <= MAX_SENDER and "\n" not in message:
            sender, content = message[:-1].strip(), ""
        content = EDITED.sub("", content).strip()
        if "\ufffd" in message:
            quarantine.append({"source": "whatsapp", "origin": origin,
                               "reason": "bytes invalid in the file's encoding; re-export the chat",
                               "payload": message})  # fmt: skip
            continue
        kind = message_kind(sender, content, ": \u200e" in raw_line)
        if kind == "text" and not content:
            quarantine.append({"source": "whatsapp", "origin": origin, "reason": "empty message",
                               "payload": message})  # fmt: skip
            continue
        rows.append({
            "source": "whatsapp", "origin": origin, "file": name, "line": line_no,
            "conversation_id": conversation_id, "timestamp": timestamp, "sender": sender,
            "text": content, "kind": kind,
        })  # fmt: skip
    records = pl.DataFrame(rows, schema=RECORD_SCHEMAS["whatsapp"])
    info = {"format": f"whatsapp ({order}, {'12 h' if twelve_hour else '24 h'})"}
    return ChatResult(records, quarantine, info)
