"""`tracking` group: where MLflow writes (local SQLite by default) and what the model is registered as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackingConfig:
    # None: $MLFLOW_TRACKING_URI, else sqlite:///<paths.work>/mlflow.db
    uri: str | None = None
    artifact_root: str = "${paths.work}/mlartifacts"
    experiment: str = "afinar"
    registered_model: str = "afinar-assistant"
    prefect_ui_url: str = "${oc.env:PREFECT_UI_URL,http://127.0.0.1:4200}"
