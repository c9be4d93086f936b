"""The model catalog: every `conf/model/*.yaml`, validated against the `model` group's schema."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from tasks.config import CONF_DIR
from tasks.config.model import ModelConfig


def load_catalog(folder: Path = CONF_DIR / "model") -> list[ModelConfig]:
    """All catalog entries, smallest first (a typo in an entry fails here, naming the file)."""
    entries = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
        except Exception as error:
            raise ValueError(f"{path}: not a valid model catalog entry: {error}") from error
        entries.append(OmegaConf.to_object(merged))
    return sorted(entries, key=lambda m: m.params_b)  # type: ignore[no-any-return]
