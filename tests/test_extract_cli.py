"""`afinar extract PATH... [--out DIR] [--json]`: one line per file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main as afinar
from tasks.extract.cli import main

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"


def test_json_summary_lists_every_file_with_counts_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main([str(DATA / "crm_utf8_bom.csv"), str(DATA / "encrypted.pdf"), "--out", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # one file could not be read
    files = {f["path"]: f for f in summary["files"]}
    assert {k: files["crm_utf8_bom.csv"][k] for k in ("kind", "rows_in", "rows_out", "rows_quarantined", "error")} == {
        "kind": "crm", "rows_in": 4, "rows_out": 4, "rows_quarantined": 0, "error": None,
    }  # fmt: skip
    assert "password" in files["encrypted.pdf"]["error"]
    assert summary["rows_in"] == summary["rows_out"] + summary["rows_quarantined"] == 4
    assert pl.read_parquet(tmp_path / "records" / "crm.parquet").height == 4


def test_table_names_kind_encoding_and_top_quarantine_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main([str(SAMPLES / "crm_interacoes.csv"), "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0
    assert "crm_interacoes.csv" in text and "cp1252" in text and "csv (;)" in text
    assert "empty text in column 'Mensagem'" in text
    assert "240 rows extracted, 2 quarantined" in text


def test_overrides_map_the_columns_of_a_users_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("Quem,Nota\nAna,Cliente pediu desconto\n")
    code = main(
        [
            str(path),
            "data.extract.crm.text=Nota",
            "data.extract.crm.author=Quem",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["rows_out"] == 1
    assert pl.read_parquet(tmp_path / "o" / "records" / "crm.parquet")["author"][0] == "Ana"


def test_bad_override_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main([str(DATA / "talk.vtt"), "data.extract.no_such_key=1", "--out", str(tmp_path)])
    assert code == 2
    assert "bad config override" in capsys.readouterr().err


def test_afinar_command_dispatches_extract(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = afinar(["extract", str(DATA / "wa_android_de.txt"), "--out", str(tmp_path), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["kind"] == "whatsapp"
