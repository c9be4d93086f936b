"""`retrain`: finds the newest finished export in the drop folder and knows one it already trained on."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from test_register import finished_run, train_dir  # noqa: F401  (fixture)

from flows.retrain import RetrainParams, _quoted, find_new_export, newest_export, runs_trained_on
from tasks.config import compose
from tasks.register import register_model
from tasks.stage_cache import hash_file

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _drop(folder: Path, name: str, age_s: float, content: bytes = b"id,text\n1,oi\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_newest_export_skips_hidden_unmatched_and_still_arriving_files(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _drop(drop, "2026-01.csv", age_s=600)
    newest = _drop(drop, "2026-02.csv", age_s=300)
    _drop(drop, ".2026-03.csv", age_s=100)  # hidden: a copy in progress by some tools
    _drop(drop, "notes.txt", age_s=50)
    _drop(drop, "2026-04.csv", age_s=1)  # still being written
    assert newest_export(drop, ["*.csv"], settle_seconds=30) == newest
    assert newest_export(drop, ["*.xlsx"]) is None


def test_missing_drop_folder_says_which_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"drop folder .*missing.* does not exist; create it"):
        newest_export(tmp_path / "missing", ["*.csv"])


def test_export_path_survives_hydra_override_quoting(tmp_path: Path) -> None:
    odd = tmp_path / "it's here, [really]" / "export.csv"
    cfg = compose([f"data.paths=[{_quoted(odd)}]"])
    assert list(cfg.data.paths) == [str(odd)]


def test_an_export_trained_on_before_is_recognised_by_content_under_another_name(
    work_overrides,
    tmp_path,
    train_dir,  # noqa: F811
) -> None:
    drop = tmp_path / "drop"
    export = _drop(drop, "crm-2026-01.csv", age_s=60, content=(SAMPLES / "crm_interacoes.csv").read_bytes())
    params = RetrainParams(drop_folder=str(drop), settle_seconds=0, overrides=work_overrides)
    cfg = compose(work_overrides)
    assert find_new_export.fn(params, cfg)["status"] == "new"

    trained_cfg = compose([*work_overrides, f"data.paths=[{_quoted(export)}]"])
    run_id, eval_dir = finished_run(trained_cfg, tmp_path, tuned=2.0)
    register_model(trained_cfg, run_id, train_dir, eval_dir)

    shutil.copy(export, drop / "crm-2026-01 (copy).csv")
    os.utime(drop / "crm-2026-01 (copy).csv")
    found = find_new_export.fn(params, cfg)
    assert found["status"] == "already-trained"
    assert found["trained_by"] == [run_id]
    assert runs_trained_on(cfg, hash_file(export)) == [run_id]
    _drop(drop, "crm-2026-02.csv", age_s=0, content=b"id,text\n2,nova\n")
    assert find_new_export.fn(params, cfg)["status"] == "new"
