"""Transcripts: WebVTT and SRT, markup stripped, speakers kept, cues merged into segments."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tasks.extract.transcript import parse_transcript

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"


def segments(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "records" / "transcript.parquet")


def test_webvtt_voice_tags_become_speakers_and_markup_is_stripped(extract_run) -> None:
    _, files, out = extract_run([DATA / "talk.vtt"])
    rows = segments(out)
    assert rows["speaker"].to_list() == ["Maria Silva", "João", "Maria Silva", None]
    # cues 1 and 2 (same speaker, 0.2 s apart) merge; settings, <b>, inline timestamps and entities go
    assert rows["text"][0] == "Welcome to the Barista Pro training. We start with the grinder settings."
    assert (rows["start_s"][0], rows["end_s"][0]) == (1.0, 7.0)
    assert rows["text"][2] == "Levels 1 to 10 & a fine grind."
    assert rows["origin"].to_list()[:2] == ["talk.vtt#cue=1", "talk.vtt#cue=3"]
    bad = pl.read_parquet(out / "quarantine.parquet")
    assert (bad["origin"][0], bad["reason"][0]) == ("talk.vtt#cue=5", "cue without text")
    assert files["talk.vtt"]["rows_in"] == 5


def test_srt_in_windows_1252_keeps_name_prefixes_as_speakers(extract_run) -> None:
    _, files, out = extract_run([DATA / "talk_cp1252.srt"])
    assert files["talk_cp1252.srt"]["encoding"] == "cp1252"
    rows = segments(out)
    assert rows["speaker"].to_list() == ["Carlos", "Ana", "Carlos"]
    assert rows["text"].to_list() == [
        "Bom dia, equipe. Vamos falar de promoções.",
        "A promoção vale até sexta?",
        "Sim, até sexta-feira às 18h.",  # the {\an8} position code is gone
    ]
    bad = pl.read_parquet(out / "quarantine.parquet")
    assert bad["origin"].to_list() == ["talk_cp1252.srt#cue=4"]


def test_rolling_captions_repeat_their_previous_line_only_once() -> None:
    result = parse_transcript((DATA / "rolling_captions.vtt").read_text(), "r.vtt", srt=False)
    assert result.records["text"].to_list() == ["so the first thing you do is descale it."]


def test_long_monologue_is_split_into_readable_segments() -> None:
    cues = "\n\n".join(
        f"00:00:{i * 2:02d}.000 --> 00:00:{i * 2 + 2:02d}.000\n<v Ana>Frase número {i} do treinamento de vendas."
        for i in range(25)
    )
    result = parse_transcript("WEBVTT\n\n" + cues, "long.vtt", srt=False)
    assert 1 < result.records.height < 25
    assert result.records["text"].str.len_chars().max() < 700  # type: ignore[operator]
    assert " ".join(result.records["text"]).count("Frase número") == 25  # nothing lost in merging


def test_demo_meeting_transcript_has_three_speakers(extract_run) -> None:
    _, _, out = extract_run([SAMPLES / "reuniao_vendas.vtt"])
    rows = segments(out)
    assert set(rows["speaker"]) == {"Carlos Mendes", "Ana", "Rafael"}
    assert not rows["text"].str.contains("<").any()


def test_utf16_webvtt_with_bom_is_decoded(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "aula.vtt"
    path.write_bytes("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Profª Lúcia>Olá, turma!\n".encode("utf-16"))
    _, files, out = extract_run([path])
    assert files["aula.vtt"]["encoding"] == "utf-16"
    assert segments(out).select("speaker", "text").row(0) == ("Profª Lúcia", "Olá, turma!")
