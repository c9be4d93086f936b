"""Shared fixtures: the embedded model's cache, a composed config on a temporary work folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
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
