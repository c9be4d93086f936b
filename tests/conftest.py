"""Shared fixtures: the embedded model's cache, a composed config on a temporary work folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# spinning OpenMP threads make torch ~15x slower on a shared, busy CPU (must be set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
# the dequantised embedded model is shared by every test (and by `afinar run` in the project folder)
MODEL_CACHE = Path(os.environ.get("AFINAR_TEST_CACHE", ROOT / "work" / "cache"))


@pytest.fixture(scope="session")
def model_cache() -> Path:
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    return MODEL_CACHE


@pytest.fixture(scope="session")
def model_cfg():
    from tasks.config.model import ModelConfig

    return ModelConfig()


@pytest.fixture(scope="session")
def tokenizer(model_cfg, model_cache):
    from tasks.model_loading import load_tokenizer

    return load_tokenizer(model_cfg, model_cache)


@pytest.fixture()
def work_overrides(tmp_path: Path, model_cache: Path) -> list[str]:
    """Overrides that keep a test's run folder, MLflow store and caches inside tmp_path (model cache shared)."""
    return [f"paths.work={tmp_path / 'work'}", f"paths.cache={model_cache}"]


def write_support_examples(path: Path, tokenizer, n_train: int = 32, n_val: int = 8, n_test: int = 8) -> Path:
    """`tests/data/support_examples.jsonl` as an Example-contract parquet: train, then val, then test rows."""
    import json

    import polars as pl

    from tasks.chat_format import count_tokens
    from tasks.records import EXAMPLE_SCHEMA, example_id

    lines = (DATA / "support_examples.jsonl").read_text(encoding="utf-8").splitlines()
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    rows = []
    for i, (line, split) in enumerate(zip(lines, splits, strict=False)):
        r = json.loads(line)
        row = {
            "id": example_id(None, r["instruction"], r["input"], r["output"]),
            "system": None,
            "instruction": r["instruction"],
            "input": r["input"],
            "output": r["output"],
            "source": "dataset",
            "origin": f"support_examples.jsonl#line={i + 1}",
            "split": split,
            "synthetic": False,
            "parent_id": None,
            "score": None,
        }
        rows.append({**row, "n_tokens": count_tokens(tokenizer, row)})
    pl.DataFrame(rows, schema=EXAMPLE_SCHEMA).write_parquet(path)
    return path


@pytest.fixture()
def support_examples(tmp_path: Path, tokenizer) -> Path:
    """A small Example parquet (32 train, 8 val, 8 test rows) of pt-BR and English support answers."""
    return write_support_examples(tmp_path / "examples.parquet", tokenizer)


@pytest.fixture()
def extract_run(tmp_path: Path):
    """Run the extract stage on paths; returns (report, files.json entries by path, out dir).

    Checks the contract on every call: each file's rows_in = rows_out + rows_quarantined, and the
    stage's counts match the records and quarantine written.
    """
    import json

    import polars as pl

    from tasks.config.data import ExtractConfig
    from tasks.extract import extract_sources

    def run(paths: list[Path], cfg: ExtractConfig | None = None, out: Path | None = None):
        out = out or tmp_path / f"extract-{len(list(tmp_path.glob('extract-*')))}"
        report = extract_sources([Path(p) for p in paths], cfg or ExtractConfig(), out)
        files = {f["path"]: f for f in json.loads((out / "files.json").read_text())}
        for f in files.values():
            assert f["rows_in"] == f["rows_out"] + f["rows_quarantined"], f
        written = sum(pl.read_parquet(p).height for p in (out / "records").glob("*.parquet"))
        quarantined = pl.read_parquet(out / "quarantine.parquet").height
        assert (report.rows_out, report.rows_quarantined) == (written, quarantined)
        assert report.rows_in == report.rows_out + report.rows_quarantined
        return report, files, out

    return run
