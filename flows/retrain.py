"""The `retrain` flow: on a schedule, train on the newest CRM export in a drop folder — once per export.

The export's content hash (sha256 of its bytes) is the key: a run that registered a model from an
input file with that hash is tagged `afinar.data.files_sha256` in MLflow, so dropping the same
export again (under any name) skips; a new export runs the whole `finetune` flow with
`data.paths` pointed at it. The deployment runs one retraining at a time (concurrency limit 1).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from tasks import tracking
from tasks.config import compose
from tasks.stage_cache import hash_file


class RetrainParams(BaseModel):
    """Where CRM exports land and how to train on them (the Prefect UI draws this as a form)."""

    drop_folder: str = Field(default="work/drop", description="Folder the CRM exports are dropped into")
    patterns: list[str] = Field(
        default_factory=lambda: ["*.csv", "*.xlsx", "*.json", "*.jsonl"],
        description="File name patterns of an export (glob, in the folder itself)",
    )
    settle_seconds: float = Field(
        default=30.0, ge=0, description="Ignore files changed more recently than this (still being copied)"
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="Hydra overrides for the finetune run, e.g. data=crm, train.epochs=3 (data.paths is set here)",
    )


def newest_export(folder: Path, patterns: list[str], settle_seconds: float = 0.0) -> Path | None:
    """The most recently modified export in `folder` that has finished arriving; None if there is none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"retrain: drop folder {folder} does not exist; create it or set drop_folder")
    now = time.time()
    candidates = {
        f
        for pattern in patterns
        for f in folder.glob(pattern)
        if f.is_file() and not f.name.startswith((".", "~")) and now - f.stat().st_mtime >= settle_seconds
    }
    return max(candidates, key=lambda f: (f.stat().st_mtime, f.name), default=None)


def runs_trained_on(cfg: DictConfig, sha256: str) -> list[str]:
    """MLflow runs that registered a model trained on a file with this content hash."""
    experiment_id = tracking.setup(cfg)
    runs = tracking.client(cfg).search_runs(
        [experiment_id], filter_string=f"tags.`afinar.data.files_sha256` LIKE '%{sha256}%'"
    )
    return [r.info.run_id for r in runs if r.data.tags.get("afinar.registered_version")]


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


@task(name="find-new-export")
def find_new_export(params: RetrainParams, cfg: DictConfig) -> dict[str, Any]:
    """The newest export and whether it still needs training (its hash is not in MLflow yet)."""
    export = newest_export(Path(params.drop_folder).resolve(), params.patterns, params.settle_seconds)
    if export is None:
        return {"status": "no-export", "drop_folder": params.drop_folder}
    digest = hash_file(export)
    trained = runs_trained_on(cfg, digest)
    status = "already-trained" if trained else "new"
    return {"status": status, "export": str(export), "sha256": digest, "trained_by": trained}


@flow(name="retrain", log_prints=True)
def retrain(params: RetrainParams | None = None) -> dict[str, Any]:
    """Train on the newest export in the drop folder unless its content was already trained on."""
    params = params or RetrainParams()
    cfg = compose(params.overrides)  # validated before any I/O
    logger = get_run_logger()
    found = find_new_export(params, cfg)
    if found["status"] != "new":
        logger.info("retrain: nothing to do (%s) %s", found["status"], found.get("export", params.drop_folder))
        create_markdown_artifact(
            f"# retrain skipped: {found['status']}\n\n```\n{found}\n```", key="afinar-retrain", description="skipped"
        )
        return found
    logger.info("retrain: new export %s (sha256 %s)", found["export"], found["sha256"][:12])
    # imported only when there is work: the nightly skip path stays free of the training stack
    from flows.finetune import FinetuneParams, finetune

    overrides = [*params.overrides, f"data.paths=[{_quoted(Path(found['export']))}]"]
    result = finetune(FinetuneParams(overrides=overrides))
    registered = result.get("registered", {})
    create_markdown_artifact(
        f"# retrain on `{Path(found['export']).name}`\n\nsha256 `{found['sha256']}`; MLflow run "
        f"`{result['mlflow_run_id']}`; registered `{registered.get('uri')}` ({registered.get('reason')})",
        key="afinar-retrain",
        description="retrained",
    )
    return {**found, "status": "trained", **result}
