"""End to end: a real Prefect server and worker; `retrain` triggered through the API as the UI does.

The first export trains and registers a version; the same export dropped again (another name)
trains nothing. Small overrides keep the pipeline to a few minutes on a CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "samples"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, model_cache) -> Iterator[dict[str, Any]]:
    """Prefect server + `afinar deploy` + a process worker, all on 127.0.0.1 with state in tmp."""
    tmp = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "AFINAR_HOME": str(tmp / "work"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    server = _start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "server.log"
    )
    processes = [server]
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp / "server.log").read_text()[-3000:]
            time.sleep(1)
        drop = tmp / "drop"
        overrides = [
            f"paths.cache={model_cache}",
            "train.max_steps=3",
            "train.per_device_batch_size=2",
            "expand.enabled=false",
            "eval.max_examples=4",
            "eval.generate=false",
        ]
        deploy = subprocess.run(
            [str(BIN / "afinar"), "deploy", "--pool", "afinar-e2e", "--drop-folder", str(drop), "--paused", *overrides],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-3000:]
        worker = _start([str(BIN / "prefect"), "worker", "start", "--pool", "afinar-e2e"], env, tmp / "worker.log")
        processes.append(worker)
        yield {"api": api, "tmp": tmp, "drop": drop, "overrides": overrides, "env": env}
    finally:
        for process in reversed(processes):
            _stop(process)


def _deployment(api: str, flow: str, name: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/deployments/name/{flow}/{name}", timeout=30)
    response.raise_for_status()
    return response.json()


def _run_from_ui(stack: dict[str, Any], params: dict[str, Any], timeout_s: float = 1500) -> dict[str, Any]:
    """What the UI's 'Custom run' does: create a flow run from the deployment, then wait for it."""
    api = stack["api"]
    deployment = _deployment(api, "retrain", "retrain")
    created = httpx.post(
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"params": params}, "state": {"type": "SCHEDULED"}},
        timeout=30,
    )
    created.raise_for_status()
    run_id = created.json()["id"]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
        if run["state"]["type"] in TERMINAL:
            return run
        time.sleep(3)
    logs = (stack["tmp"] / "worker.log").read_text()[-4000:]
    raise AssertionError(f"flow run {run_id} did not finish in {timeout_s}s; worker log:\n{logs}")


def _drop(stack: dict[str, Any], name: str) -> Path:
    stack["drop"].mkdir(exist_ok=True)
    path = stack["drop"] / name
    shutil.copyfile(SAMPLES / "crm_interacoes.csv", path)
    return path


def test_deployments_render_forms_with_a_nightly_schedule_and_one_retrain_at_a_time(stack):
    finetune = _deployment(stack["api"], "finetune", "finetune")
    schema = finetune["parameter_openapi_schema"]
    definitions = schema.get("definitions") or schema.get("$defs")
    overrides = definitions["FinetuneParams"]["properties"]["overrides"]
    assert overrides["type"] == "array" and overrides["items"]["type"] == "string"
    assert overrides["description"]
    retrain = _deployment(stack["api"], "retrain", "retrain")
    assert retrain["concurrency_limit"] == 1 or retrain["global_concurrency_limit"]["limit"] == 1
    assert [s["schedule"]["cron"] for s in retrain["schedules"]] == ["0 3 * * *"]
    assert retrain["parameters"]["params"]["drop_folder"] == str(stack["drop"])


def test_a_new_export_trains_and_registers_once_and_the_same_export_again_trains_nothing(stack):
    params = {"drop_folder": str(stack["drop"]), "settle_seconds": 0, "overrides": stack["overrides"]}
    _drop(stack, "crm-2026-01.csv")
    first = _run_from_ui(stack, params)
    worker_log = (stack["tmp"] / "worker.log").read_text()[-4000:]
    assert first["state"]["type"] == "COMPLETED", worker_log

    mlc = MlflowClient(f"sqlite:///{stack['tmp'] / 'work' / 'mlflow.db'}")
    versions = mlc.search_model_versions("name='afinar-assistant'")
    assert len(versions) == 1
    version = versions[0]
    model = mlc.get_registered_model("afinar-assistant")
    aliases = {alias: str(v) for alias, v in model.aliases.items()}
    assert aliases["challenger"] == str(version.version)
    beats_base = version.tags["afinar.eval.improved"] == "true"
    assert (aliases.get("champion") == str(version.version)) == beats_base, version.tags["afinar.promotion"]
    run = mlc.get_run(version.run_id)
    assert run.data.tags["prefect.flow_run_id"]  # the MLflow run links back to its Prefect flow run

    artifacts = httpx.post(f"{stack['api']}/artifacts/filter", json={}, timeout=30).json()
    links = [a for a in artifacts if a["key"] == "mlflow-run"]  # a link artifact (Prefect stores it as markdown)
    assert links and version.run_id in links[0]["data"]

    _drop(stack, "crm-2026-01 (again).csv")
    second = _run_from_ui(stack, params)
    assert second["state"]["type"] == "COMPLETED"
    assert len(mlc.search_model_versions("name='afinar-assistant'")) == 1
    experiment = mlc.get_experiment_by_name("afinar")
    assert len(mlc.search_runs([experiment.experiment_id])) == 1


def test_prefect_yaml_deploys_the_same_two_deployments(stack):
    env = {**stack["env"], "AFINAR_PROJECT_DIR": str(ROOT)}
    subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", "afinar", "--type", "process"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    retrain = _deployment(stack["api"], "retrain", "retrain")
    assert retrain["work_pool_name"] == "afinar"
    assert retrain["job_variables"]["working_dir"] == str(ROOT)
    assert [s["schedule"]["cron"] for s in retrain["schedules"]] == ["0 3 * * *"]
    finetune = _deployment(stack["api"], "finetune", "finetune")
    assert finetune["parameters"] == {"params": {"overrides": []}}
