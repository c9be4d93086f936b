"""Structured configs: one dataclass per Hydra group, composed and validated before any I/O.

Each group's schema lives in its own module so the stages can grow their settings
independently; `Config` ties them together and `compose` is the one way to build it,
from the shell, the Prefect UI or a test alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf

from tasks.config.data import DataConfig
from tasks.config.eval import EvalConfig
from tasks.config.expand import ExpandConfig
from tasks.config.model import ModelConfig
from tasks.config.plan import PlanConfig
from tasks.config.teacher import TeacherConfig
from tasks.config.tracking import TrackingConfig
from tasks.config.train import TrainConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class PathsConfig:
    """Where a run keeps its files; relative paths are taken from the current folder."""

    work: str = "${oc.env:AFINAR_HOME,work}"
    runs: str = "${paths.work}/runs"
    cache: str = "${paths.work}/cache"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    expand: ExpandConfig = field(default_factory=ExpandConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 42
    run_name: str | None = None


def register_schemas() -> None:
    """Put the schema in Hydra's ConfigStore (`conf/config.yaml` lists it first) and our resolvers."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    if not OmegaConf.has_resolver("afinar.root"):
        # the project folder, so bundled samples resolve wherever the command is run from
        OmegaConf.register_new_resolver("afinar.root", lambda: str(CONF_DIR.parent))


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/` with Hydra overrides and validate it against the structured schema."""
    register_schemas()
    # `afinar run` composes inside Hydra's own app (sweeps included): keep its state intact
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    finally:
        GlobalHydra.instance().clear()
        if backup is not None:
            restore_gh_from_backup(backup)
    OmegaConf.resolve(cfg)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data (for YAML artifacts and MLflow params)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def section_as(cfg: DictConfig, cls: type) -> Any:
    """A typed copy of one section (e.g. `section_as(cfg.train, TrainConfig)`)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), cfg))
