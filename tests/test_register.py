"""Register: the run's model becomes an MLflow version; `champion` moves only to a better model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from tasks import tracking
from tasks.config import compose
from tasks.register import (
    CHALLENGER,
    CHAMPION,
    AdapterMissingError,
    VerdictError,
    export_merged,
    promote,
    register_model,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory, model_cfg, model_cache) -> Path:
    """A real (tiny, r=2) LoRA adapter on the embedded model, saved as the train stage saves it."""
    from peft import LoraConfig, get_peft_model

    from tasks.model_loading import load_model, load_tokenizer

    folder = tmp_path_factory.mktemp("train")
    model = get_peft_model(
        load_model(model_cfg, model_cache), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    )
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh LoRA is a no-op; nudge B so the adapter visibly changes the model
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    model.save_pretrained(folder / "adapter")
    load_tokenizer(model_cfg, model_cache).save_pretrained(folder / "adapter")
    return folder


def _examples(folder: Path, test_texts: list[str]) -> Path:
    rows = [("train", f"train question {i}") for i in range(4)] + [("test", t) for t in test_texts]
    frame = pl.DataFrame(
        {
            "id": [f"{split}-{text}" for split, text in rows],
            "system": [None] * len(rows),
            "instruction": [text for _, text in rows],
            "input": [""] * len(rows),
            "output": ["an answer"] * len(rows),
            "source": ["crm"] * len(rows),
            "origin": [f"export.csv#row={i}" for i in range(len(rows))],
            "split": [split for split, _ in rows],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "examples.parquet")
    return folder / "examples.parquet"


def finished_run(cfg, tmp: Path, tuned: float, base: float = 3.0, test: tuple[str, ...] = ("q1", "q2")) -> tuple:
    """An MLflow run as the flow leaves it before register: stage tags, examples and a loss verdict."""
    experiment = tracking.setup(cfg)
    mlc = tracking.client(cfg)
    run_id = mlc.create_run(experiment).info.run_id
    expand_dir = tmp / f"expand-{run_id}"
    _examples(expand_dir, list(test))
    mlc.set_tag(run_id, "afinar.stage.expand", str(expand_dir))
    eval_dir = tmp / f"eval-{run_id}"
    eval_dir.mkdir()
    verdict = {
        "metric": "loss",
        "base": {"loss": base},
        "tuned": {"loss": tuned},
        "improved": tuned < base,
        "delta": tuned - base,
        "better_on": ["loss"] if tuned < base else [],
    }
    (eval_dir / "verdict.json").write_text(json.dumps(verdict))
    return run_id, eval_dir


def register(cfg, tmp: Path, train_dir: Path, tuned: float) -> dict:
    run_id, eval_dir = finished_run(cfg, tmp, tuned=tuned)
    return register_model(cfg, run_id, train_dir, eval_dir)


@pytest.fixture()
def cfg(work_overrides):
    return compose(work_overrides)


def _aliases(cfg) -> dict[str, str]:
    model = tracking.client(cfg).get_registered_model(cfg.tracking.registered_model)
    return {alias: str(v) for alias, v in model.aliases.items()}


def test_first_improved_run_becomes_challenger_and_champion_with_its_tags_and_datasets(cfg, tmp_path, train_dir):
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=2.0)
    result = register_model(cfg, run_id, train_dir, eval_dir)
    assert result["version"] == 1 and result["promoted"], result["reason"]
    assert _aliases(cfg) == {CHALLENGER: "1", CHAMPION: "1"}
    mlc = tracking.client(cfg)
    version = mlc.get_model_version(cfg.tracking.registered_model, "1")
    assert version.run_id == run_id
    assert version.tags["afinar.run_id"] == run_id
    assert version.tags["afinar.base_model"] == "smollm2_135m"
    assert version.tags["afinar.eval.tuned"] == "2.0"
    assert len(version.tags["afinar.data.test_sha256"]) == 64
    assert json.loads(version.tags["afinar.eval.verdict"])["improved"] is True
    inputs = mlc.get_run(run_id).inputs.dataset_inputs
    contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"train", "test"}


def test_promotion_is_refused_when_the_tuned_model_is_not_better_than_its_base(cfg, tmp_path, train_dir):
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=3.5, base=3.0)
    result = register_model(cfg, run_id, train_dir, eval_dir)
    assert not result["promoted"] and "base" in result["reason"]
    assert _aliases(cfg) == {CHALLENGER: "1"}


def test_champion_moves_only_to_a_version_better_on_the_same_test_set(cfg, tmp_path, train_dir):
    first = register(cfg, tmp_path, train_dir, 2.0)
    worse = register(cfg, tmp_path, train_dir, 2.5)
    assert first["promoted"] and not worse["promoted"]
    assert "champion v1" in worse["reason"]
    assert _aliases(cfg) == {CHAMPION: "1", CHALLENGER: "2"}
    better = register(cfg, tmp_path, train_dir, 1.5)
    assert better["promoted"]
    assert _aliases(cfg) == {CHAMPION: "3", CHALLENGER: "3"}
    tags = tracking.client(cfg).get_model_version(cfg.tracking.registered_model, "2").tags
    assert tags["afinar.promotion"].startswith("refused")


def test_bad_stage_outputs_name_the_file_and_what_is_missing(cfg, tmp_path, train_dir):
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=2.0)
    (eval_dir / "verdict.json").write_text(json.dumps({"metric": "loss", "base": {}, "tuned": {}, "improved": True}))
    with pytest.raises(VerdictError, match=r"verdict\.json.*'base' has no score"):
        register_model(cfg, run_id, train_dir, eval_dir)
    with pytest.raises(AdapterMissingError, match=r"adapter_config\.json"):
        register_model(cfg, run_id, tmp_path, eval_dir)


PROMOTE = """
import sys, time
from tasks.config import compose
from tasks.register import promote
cfg = compose(sys.argv[1:4])
while time.time() < float(sys.argv[4]):  # start together
    time.sleep(0.01)
print(promote(cfg, cfg.tracking.registered_model, sys.argv[5]))
"""


@pytest.mark.slow
def test_two_concurrent_promotions_leave_the_better_version_as_the_one_champion(work_overrides, tmp_path, train_dir):
    import time

    overrides = [*work_overrides, "tracking.promote=false"]
    cfg = compose(overrides)
    for tuned in (2.0, 1.0, 1.5):  # v1 champion first, then v2 (best) and v3 race
        run_id, eval_dir = finished_run(cfg, tmp_path, tuned=tuned)
        register_model(cfg, run_id, train_dir, eval_dir)
    promote(cfg, cfg.tracking.registered_model, "1")
    start = time.time() + 8
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTE, *overrides, str(start), version],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in ("3", "2")
    ]
    outputs = [r.communicate(timeout=300) for r in racers]
    assert all(r.returncode == 0 for r in racers), [err[-2000:] for _, err in outputs]
    assert _aliases(cfg)[CHAMPION] == "2", outputs
    lines = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert sum("True" in line for line in lines) >= 1


@pytest.mark.slow
def test_champion_loads_in_a_fresh_offline_process_and_replies_like_the_served_engine(cfg, tmp_path, train_dir):
    from tasks.chat_model import ChatEngine
    from tasks.config.model import ModelConfig

    register(cfg, tmp_path, train_dir, 2.0)
    script = (
        "import mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({tracking.tracking_uri(cfg)!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{cfg.tracking.registered_model}@champion')\n"
        "frame = pd.DataFrame({'instruction': ['Qual o prazo de entrega?'], 'input': ['']})\n"
        "print(repr(model.predict(frame, params={'max_new_tokens': 12})[0]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "AFINAR_CACHE": str(tmp_path / "c")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reply = eval(done.stdout.strip().splitlines()[-1])
    engine = ChatEngine.from_catalog(ModelConfig(), cfg.paths.cache, train_dir / "adapter")
    expected = engine.complete([{"role": "user", "content": "Qual o prazo de entrega?"}], max_tokens=12)
    assert reply == expected.text and reply


@pytest.mark.slow
def test_export_writes_merged_safetensors_that_plain_transformers_loads(
    cfg, tmp_path, train_dir, model_cache, monkeypatch
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.chat_model import ChatEngine
    from tasks.config.model import ModelConfig

    monkeypatch.setenv("AFINAR_HOME", str(Path(cfg.paths.work)))
    register(cfg, tmp_path, train_dir, 2.0)
    out = export_merged(f"models:/{cfg.tracking.registered_model}/1", tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    tuned = ChatEngine.from_catalog(ModelConfig(), model_cache, train_dir / "adapter").model
    ids = torch.tensor([tokenizer("Olá, tudo bem?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, tuned(ids).logits, atol=1e-4)


@pytest.mark.slow
def test_bundled_base_travels_inside_the_version_and_loads_from_there(work_overrides, tmp_path, train_dir):
    import mlflow

    cfg = compose([*work_overrides, "tracking.base_weights=bundle"])
    result = register(cfg, tmp_path, train_dir, 2.0)
    local = Path(mlflow.artifacts.download_artifacts(result["model_uri"], dst_path=str(tmp_path / "dl")))
    artifacts = mlflow.models.Model.load(str(local / "MLmodel")).flavors["python_function"]["artifacts"]
    base = local / artifacts["base"]["path"]
    assert (base / "model.safetensors").is_file()
    assert (local / artifacts["adapter"]["path"] / "adapter_config.json").is_file()
    model = mlflow.pyfunc.load_model(str(local))
    engine = model.unwrap_python_model().engine
    assert Path(engine.model.name_or_path) == base
    assert model.predict(__import__("pandas").DataFrame({"prompt": ["Oi"]}), params={"max_new_tokens": 4})[0]


@pytest.mark.slow
def test_a_champion_from_another_test_set_is_rescored_on_the_new_one_before_comparing(
    work_overrides, tmp_path, train_dir
):
    cfg = compose([*work_overrides, "eval.generate=false", "eval.max_examples=2"])
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=0.01, test=("old q1", "old q2"))
    assert register_model(cfg, run_id, train_dir, eval_dir)["promoted"]
    # the champion's recorded 0.01 was on another test set: its real loss on the new one is far higher
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=0.5, test=("new q1", "new q2"))
    result = register_model(cfg, run_id, train_dir, eval_dir)
    assert result["promoted"], result["reason"]
    assert "beats champion v1" in result["reason"]
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=50.0, base=60.0, test=("newer q1", "newer q2"))
    result = register_model(cfg, run_id, train_dir, eval_dir)
    assert not result["promoted"] and "does not beat champion v2" in result["reason"]
