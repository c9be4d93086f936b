"""The spine: the real `finetune` flow on the bundled samples, the embedded model, real MLflow and Prefect."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from flows.finetune import FinetuneParams, finetune
from tasks.accounting import StageReport

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tmp_path_factory, model_cache):
    """The default run twice, nothing changed in between: (first result, second result, seconds each)."""
    work = tmp_path_factory.mktemp("spine") / "work"
    overrides = [f"paths.work={work}", f"paths.cache={model_cache}"]
    results, seconds = [], []
    for _ in range(2):
        start = time.perf_counter()
        results.append(finetune(FinetuneParams(overrides=overrides)))
        seconds.append(time.perf_counter() - start)
    return results, seconds, work


def _metrics(work: Path, run_id: str) -> dict[str, float]:
    return MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_run(run_id).data.metrics


def test_default_run_beats_the_base_model_on_the_test_split(two_runs):
    (first, _), _, work = two_runs
    metrics = _metrics(work, first["mlflow_run_id"])
    assert metrics["eval/tuned_loss"] < metrics["eval/base_loss"]
    for name in ("extract/rows_in", "transform/rows_out", "expand/candidates", "expand/accepted", "train/loss"):
        assert name in metrics, name


def test_every_stage_accounts_for_its_rows(two_runs):
    (first, _), _, _ = two_runs
    for stage, folder in first["stages"].items():
        report = StageReport.load(Path(folder) / "report.json")
        assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_deduplicated, stage
    extracted = StageReport.load(Path(first["stages"]["extract"]) / "report.json")
    assert extracted.rows_out > 0


def test_mlflow_run_holds_config_loss_curve_and_prefect_link(two_runs):
    (first, _), _, work = two_runs
    mlc = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = mlc.get_run(first["mlflow_run_id"])
    assert run.data.params["model.name"] == "smollm2_135m"
    assert run.data.tags.get("prefect.flow_run_id")
    history = mlc.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) > 1
    artifacts = {a.path for a in mlc.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts


def test_second_run_with_nothing_changed_reuses_every_stage(two_runs):
    (first, second), seconds, work = two_runs
    assert first["stages"] == second["stages"]
    metrics = _metrics(work, second["mlflow_run_id"])
    for stage in ("extract", "validate", "transform", "expand", "train"):
        assert metrics[f"{stage}/cached"] == 1.0, stage
    assert seconds[1] < seconds[0] / 2, seconds


def test_registered_model_generates_in_a_fresh_offline_process(two_runs):
    (first, _), _, work = two_runs
    registered = first["registered"]
    uri = f"models:/{registered['name']}/{registered['version']}"
    script = (
        "import mlflow, pandas as pd, sys\n"
        f"mlflow.set_tracking_uri('sqlite:///{work / 'mlflow.db'}')\n"
        f"model = mlflow.pyfunc.load_model('{uri}')\n"
        "out = model.predict(pd.DataFrame({'prompt': ['Qual o prazo de entrega?']}))\n"
        "print(repr(list(out)[0]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "*"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert isinstance(answer, str) and answer.strip()
    assert json.dumps(registered)
