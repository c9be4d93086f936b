"""MLflow for every run: local SQLite by default, `$MLFLOW_TRACKING_URI` or `tracking=server` otherwise.

Stages log through the run id explicitly (MlflowClient), so logging works the same from
Prefect's worker threads as from the main thread.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from tasks.accounting import StageReport


def tracking_uri(cfg: DictConfig) -> str:
    if cfg.tracking.uri:
        return str(cfg.tracking.uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = Path(cfg.paths.work).resolve() / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def use_store(uri: str) -> None:
    """Make `uri` MLflow's tracking and registry store in this process, leaving the environment as it was."""
    user_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # mlflow also exports the URI to the environment; keep the user's own there, or a later config in this
    # process (another paths.work) would read this store as if the user had set $MLFLOW_TRACKING_URI
    for key, value in user_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def setup(cfg: DictConfig) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    uri = tracking_uri(cfg)
    use_store(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root = None
    if uri.startswith("sqlite:"):
        root = Path(cfg.tracking.artifact_root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        artifact_root = root.as_uri()
    try:
        return client.create_experiment(cfg.tracking.experiment, artifact_location=artifact_root)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return client.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def client(cfg: DictConfig) -> MlflowClient:
    return MlflowClient(tracking_uri(cfg))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → `a.b.c` params (MLflow params are flat strings of at most 6000 chars)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def log_stage(cfg: DictConfig, run_id: str, report: StageReport, stage_dir: Path, cached: bool) -> None:
    """Counts and metrics as `stage/name`, the stage's artifacts under `<stage>/`."""
    mlc = client(cfg)
    metrics = report.all_metrics()
    metrics[f"{report.stage}/cached"] = float(cached)
    # where each stage's files are (register reads the examples from here)
    mlc.set_tag(run_id, f"afinar.stage.{report.stage}", str(stage_dir))
    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in metrics.items()])
    series = stage_dir / "series.jsonl"
    if series.is_file():
        log_series(mlc, run_id, series)
    for name, rel in report.artifacts.items():
        path = stage_dir / rel
        if path.is_dir():
            mlc.log_artifacts(run_id, str(path), artifact_path=f"{report.stage}/{name}")
        elif path.is_file():
            mlc.log_artifact(run_id, str(path), artifact_path=report.stage)
            if name == "samples" and path.suffix == ".parquet":  # MLflow's table view (Evaluation tab)
                table = pl.read_parquet(path).to_pandas()
                mlc.log_table(run_id, data=table, artifact_file=f"{report.stage}/samples.json")


def log_series(mlc: MlflowClient, run_id: str, path: Path, batch: int = 500) -> None:
    """Per-step metrics from a stage's `series.jsonl` (`{"step": n, "train/loss": x, ...}` per line)."""
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        point = json.loads(line)
        step = int(point.pop("step", 0))
        metrics += [Metric(k, float(v), now, step) for k, v in point.items() if isinstance(v, int | float)]
    for start in range(0, len(metrics), batch):
        mlc.log_batch(run_id, metrics=metrics[start : start + batch])
