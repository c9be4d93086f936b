"""The `finetune` flow: extract → validate → transform → expand → train → evaluate → register.

Each stage is a plain function in `tasks/`; the tasks here are thin wrappers that cache the stage
on its inputs and config (see `tasks.stage_cache`), log its counts to the run's MLflow run, and
hand the next stage a folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks import tracking
from tasks.accounting import StageReport
from tasks.config import compose, section_as, to_container
from tasks.config.data import DataConfig, ExtractConfig, ValidateConfig
from tasks.config.eval import EvalConfig
from tasks.config.expand import ExpandConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.config.train import TrainConfig
from tasks.evaluate import evaluate_models
from tasks.expand import expand_examples
from tasks.extract import extract_sources
from tasks.model_loading import offline_environment
from tasks.plan import plan_for_run
from tasks.register import register_model
from tasks.stage_cache import run_cached
from tasks.train import train_adapter
from tasks.transform import build_examples
from tasks.validate import validate_records


class FinetuneParams(BaseModel):
    """What a run is: the same Hydra overrides the shell takes (`afinar run key=value ...`)."""

    overrides: list[str] = Field(
        default_factory=list,
        description="Hydra overrides, e.g. data=whatsapp_demo, model=qwen2_5_0_5b, train.epochs=3",
    )


class Run:
    """The state one flow run carries between stages: its config, folders and MLflow run."""

    def __init__(self, cfg: DictConfig, run_id: str) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.work = Path(cfg.paths.work).resolve()
        self.stages = self.work / "stages"
        self.cache = Path(cfg.paths.cache).resolve()

    def stage(
        self,
        name: str,
        settings: Any,
        work: Callable[[Path], StageReport],
        inputs: list[Path] | None = None,
        upstream: list[Path] | None = None,
    ) -> Path:
        """Run (or reuse) one stage, then log its counts and artifacts to MLflow."""
        out_dir, report, cached = run_cached(
            name, self.stages, settings, work, inputs=inputs or [], upstream=upstream or []
        )
        tracking.log_stage(self.cfg, self.run_id, report, out_dir, cached)
        get_run_logger().info(
            "%s: in=%d out=%d quarantined=%d deduplicated=%d%s (%s)",
            name,
            report.rows_in,
            report.rows_out,
            report.rows_quarantined,
            report.rows_deduplicated,
            " [cached]" if cached else "",
            out_dir,
        )
        return out_dir


def _settings(section: Any) -> dict[str, Any]:
    return json.loads(json.dumps(to_container(section) if isinstance(section, DictConfig) else section))


@task(name="extract", retries=1)
def extract_task(run: Run) -> Path:
    data = section_as(run.cfg.data, DataConfig)
    paths = [Path(p) for p in data.paths]
    cfg = section_as(run.cfg.data.extract, ExtractConfig)
    return run.stage(
        "extract",
        {"paths": [str(p) for p in paths], "extract": _settings(run.cfg.data.extract)},
        lambda out: extract_sources(paths, cfg, out),
        inputs=paths,
    )


@task(name="validate")
def validate_task(run: Run, extracted: Path) -> Path:
    cfg = section_as(run.cfg.data.validate, ValidateConfig)
    return run.stage(
        "validate",
        _settings(run.cfg.data.validate),
        lambda out: validate_records(extracted / "records", cfg, out),
        upstream=[extracted],
    )


@task(name="transform")
def transform_task(run: Run, validated: Path) -> Path:
    data = section_as(run.cfg.data, DataConfig)
    model = section_as(run.cfg.model, ModelConfig)
    teacher = section_as(run.cfg.teacher, TeacherConfig)
    settings = {k: _settings(run.cfg[k]) for k in ("model", "teacher")}
    settings["transform"] = _settings(run.cfg.data.transform)
    return run.stage(
        "transform",
        {**settings, "seed": run.cfg.seed},
        lambda out: build_examples(validated / "records", data, model, teacher, run.cache, out, seed=run.cfg.seed),
        upstream=[validated],
    )


@task(name="plan")
def plan_task(run: Run, transformed: Path) -> dict[str, Any]:
    """Log what the planner recommends for this run's examples (`plan.json`) and its estimates as plan/ metrics."""
    try:
        plan = plan_for_run(run.cfg, transformed / "examples.parquet")
    except Exception as error:  # advice only: a planner failure must not stop the training it advises on
        get_run_logger().warning("plan: no plan for this run: %s", error)
        return {}
    mlc = tracking.client(run.cfg)
    mlc.log_dict(run.run_id, plan, "plan.json")
    numbers = {**plan["estimates"], **{f"run_{k}": v for k, v in plan["run"].items()}}
    for name, value in numbers.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            mlc.log_metric(run.run_id, f"plan/{name}", float(value))
    get_run_logger().info("plan: %s, %s %s", plan["advice"], plan["model"]["name"], plan["method"]["name"])
    return plan


@task(name="expand")
def expand_task(run: Run, transformed: Path) -> Path:
    cfg = section_as(run.cfg.expand, ExpandConfig)
    teacher = section_as(run.cfg.teacher, TeacherConfig)
    model = section_as(run.cfg.model, ModelConfig)
    data = section_as(run.cfg.data, DataConfig)
    settings = {k: _settings(run.cfg[k]) for k in ("expand", "teacher", "model")}
    return run.stage(
        "expand",
        {**settings, "seed": run.cfg.seed},
        lambda out: expand_examples(
            transformed / "examples.parquet", cfg, teacher, model, data, run.cache, out, seed=run.cfg.seed
        ),
        upstream=[transformed],
    )


@task(name="train")
def train_task(run: Run, expanded: Path) -> Path:
    model = section_as(run.cfg.model, ModelConfig)
    cfg = section_as(run.cfg.train, TrainConfig)
    settings = {k: _settings(run.cfg[k]) for k in ("train", "model")}
    return run.stage(
        "train",
        {**settings, "seed": run.cfg.seed},
        lambda out: train_adapter(expanded / "examples.parquet", model, cfg, run.cache, out, seed=run.cfg.seed),
        upstream=[expanded],
    )


@task(name="evaluate")
def evaluate_task(run: Run, expanded: Path, trained: Path) -> Path:
    model = section_as(run.cfg.model, ModelConfig)
    cfg = section_as(run.cfg.eval, EvalConfig)
    teacher = section_as(run.cfg.teacher, TeacherConfig)  # the judge of the optional win rate
    settings = {k: _settings(run.cfg[k]) for k in ("eval", "model", "teacher")}
    return run.stage(
        "evaluate",
        {**settings, "seed": run.cfg.seed},
        lambda out: evaluate_models(
            expanded / "examples.parquet",
            trained / "adapter",
            model,
            cfg,
            run.cache,
            out,
            seed=run.cfg.seed,
            teacher_cfg=teacher,
        ),
        upstream=[expanded, trained],
    )


@task(name="register", retries=2, retry_delay_seconds=2)
def register_task(run: Run, trained: Path, evaluated: Path) -> dict[str, Any]:
    return register_model(run.cfg, run.run_id, trained, evaluated)


def _start_mlflow_run(cfg: DictConfig) -> str:
    experiment_id = tracking.setup(cfg)
    tags = {"afinar.data": str(cfg.data.name), "afinar.model": str(cfg.model.name)}
    if flow_run.id:
        tags["prefect.flow_run_id"] = str(flow_run.id)
        url = str(flow_run.ui_url or "")
        if url.startswith("http"):  # without a server Prefect has no UI address to link to
            tags["prefect.flow_run_url"] = url
    mlc = tracking.client(cfg)
    run = mlc.create_run(experiment_id, run_name=cfg.run_name or flow_run.name or None, tags=tags)
    resolved = to_container(cfg)
    for key, value in tracking.flatten(resolved).items():
        mlc.log_param(run.info.run_id, key, value)
    mlc.log_text(run.info.run_id, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), "config.yaml")
    return run.info.run_id


def _summary(cfg: DictConfig, run_id: str, folders: dict[str, Path], registered: dict[str, Any]) -> str:
    lines = [f"# afinar run `{run_id}`", ""]
    uri = tracking.tracking_uri(cfg)
    if uri.startswith("http"):
        lines.append(f"MLflow: [{run_id}]({uri.rstrip('/')}/#/experiments/0/runs/{run_id})")
    else:
        lines.append(f"MLflow run `{run_id}` in `{uri}` (open with `mlflow ui --backend-store-uri {uri}`)")
    lines += ["", "| stage | in | out | quarantined | deduplicated | folder |", "|---|---|---|---|---|---|"]
    for name, folder in folders.items():
        r = StageReport.load(folder / "report.json")
        lines.append(
            f"| {name} | {r.rows_in} | {r.rows_out} | {r.rows_quarantined} | {r.rows_deduplicated} | `{folder}` |"
        )
    lines += ["", f"Registered: `{json.dumps(registered, default=str)}`"]
    return "\n".join(lines)


@flow(name="finetune", log_prints=True)
def finetune(params: FinetuneParams | None = None) -> dict[str, Any]:
    """The whole chain on the composed config; returns the MLflow run id, stage folders and registration."""
    params = params or FinetuneParams()
    cfg = compose(params.overrides)  # validated before any I/O
    if cfg.model.source == "embedded":
        offline_environment()
    run_id = _start_mlflow_run(cfg)
    run = Run(cfg, run_id)
    mlc = tracking.client(cfg)
    try:
        extracted = extract_task(run)
        validated = validate_task(run, extracted)
        transformed = transform_task(run, validated)
        plan_task(run, transformed)
        expanded = expand_task(run, transformed)
        trained = train_task(run, expanded)
        evaluated = evaluate_task(run, expanded, trained)
        registered = register_task(run, trained, evaluated)
    except BaseException:
        mlc.set_terminated(run_id, "FAILED")
        raise
    folders = {
        "extract": extracted,
        "validate": validated,
        "transform": transformed,
        "expand": expanded,
        "train": trained,
        "evaluate": evaluated,
    }
    summary = _summary(cfg, run_id, folders, registered)
    create_markdown_artifact(summary, key="afinar-run-summary", description="afinar run summary")
    mlc.log_text(run_id, summary, "summary.md")
    mlc.set_terminated(run_id, "FINISHED")
    return {"mlflow_run_id": run_id, "stages": {k: str(v) for k, v in folders.items()}, "registered": registered}
