"""The train stage end to end on the embedded model: adapter and series written, a killed run resumes
to the same result, two processes train like one, and bad input or hardware fails clearly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pytest
from safetensors.torch import load_file

from tasks.config.train import LoraConfig, TrainConfig
from tasks.train import TrainingDataError, TrainingDeviceError, train_adapter

ROOT = Path(__file__).resolve().parents[1]


def tiny(**overrides) -> TrainConfig:
    """A few short steps: what a test can afford on a shared 2-core CPU."""
    base = {
        "max_steps": 6,
        "per_device_batch_size": 1,
        "max_seq_len": 192,
        "eval_every_steps": 3,
        "save_every_steps": 2,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
    }
    return TrainConfig(**{**base, **overrides})


def adapter_weights(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def losses(out: Path) -> dict[str, float]:
    """`{"3 val/loss": 2.91, ...}`: every logged loss by step and name."""
    points = [json.loads(line) for line in (out / "series.jsonl").read_text().splitlines()]
    return {f"{p['step']} {k}": v for p in points for k, v in p.items() if k in ("train/loss", "val/loss")}


@pytest.mark.slow
def test_training_writes_a_loadable_adapter_series_and_curve_and_lowers_train_loss(
    support_examples, model_cfg, model_cache, tmp_path
):
    out = tmp_path / "train"
    report = train_adapter(support_examples, model_cfg, tiny(max_steps=8), model_cache, out, seed=1)

    assert report.stage == "train"
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (40, 40, 0)
    assert report.artifacts == {"loss_curve": "loss_curve.png", "series": "series.jsonl"}
    assert report.metrics["steps"] == 8 and report.metrics["tokens"] > 0
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    points = [json.loads(line) for line in (out / "series.jsonl").read_text().splitlines()]
    train_points = [p for p in points if "train/loss" in p]
    assert [p["step"] for p in train_points] == list(range(1, 9))
    assert set(train_points[0]) >= {"step", "train/loss", "train/learning_rate", "train/tokens_per_s"}
    assert [p["step"] for p in points if "val/loss" in p] == [3, 6, 8]
    first, last = train_points[0]["train/loss"], sum(p["train/loss"] for p in train_points[-3:]) / 3
    assert last < first

    # the adapter loads offline onto the catalog's base model, with the saved tokenizer
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tasks.model_loading import load_model

    tuned = PeftModel.from_pretrained(load_model(model_cfg, model_cache), out / "adapter")
    assert tuned.peft_config["default"].r == 16
    assert AutoTokenizer.from_pretrained(out / "adapter").chat_template


@pytest.mark.slow
def test_over_length_rows_are_quarantined_not_dropped(support_examples, model_cfg, model_cache, tmp_path):
    frame = pl.read_parquet(support_examples)
    long_output = "Resposta detalhada sobre prazos, trocas e garantia. " * 40
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(long_output)).otherwise(pl.col("output")).alias("output")
    )
    path = tmp_path / "examples.parquet"
    frame.write_parquet(path)
    report = train_adapter(path, model_cfg, tiny(max_steps=1), model_cache, tmp_path / "train", seed=1)
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (40, 39, 1)
    quarantine = pl.read_parquet(tmp_path / "train" / "quarantine.parquet")
    assert quarantine["origin"].to_list() == ["support_examples.jsonl#line=2"]
    assert "max_seq_len 192" in quarantine["reason"][0]


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_to_the_same_adapter(support_examples, model_cfg, model_cache, tmp_path):
    cfg = tiny(max_steps=8, save_every_steps=2, eval_every_steps=4)
    reference = tmp_path / "uninterrupted"
    train_adapter(support_examples, model_cfg, cfg, model_cache, reference, seed=5)

    killed = tmp_path / "killed"
    cmd = [
        sys.executable, "-m", "tasks.train", "--examples", str(support_examples), "--out", str(killed),
        "--cache", str(model_cache), "--seed", "5",
        "--model-json", json.dumps(asdict(model_cfg)), "--train-json", json.dumps(asdict(cfg)),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 900
    while not (killed / "checkpoints" / "step-0000004" / "state.pt").is_file():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter").exists(), "the run must be killed mid-training"

    report = train_adapter(support_examples, model_cfg, cfg, model_cache, killed, seed=5)
    assert report.metrics["steps"] == 8
    assert losses(killed) == pytest.approx(losses(reference), abs=1e-6)
    got, want = adapter_weights(killed), adapter_weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        assert (got[name] - want[name]).abs().max() < 1e-6, name


@pytest.mark.slow
def test_two_processes_train_the_same_adapter_as_one(support_examples, model_cfg, model_cache, tmp_path):
    # no dropout: each process draws its own dropout masks, everything else must agree
    cfg = tiny(max_steps=3, per_device_batch_size=1, eval_every_steps=3, lora=LoraConfig(dropout=0.0))
    cfg.gradient_accumulation_steps = 2
    one = train_adapter(support_examples, model_cfg, cfg, model_cache, tmp_path / "one", seed=2)
    cfg.gradient_accumulation_steps = 1
    cfg.nproc = 2  # 2 processes x 1 micro-batch = the same 2 micro-batches per step
    two = train_adapter(support_examples, model_cfg, cfg, model_cache, tmp_path / "two", seed=2)

    assert two.metrics["steps"] == one.metrics["steps"] == 3
    assert two.metrics["tokens"] == one.metrics["tokens"]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    got, want = adapter_weights(tmp_path / "two"), adapter_weights(tmp_path / "one")
    for name in want:
        assert (got[name] - want[name]).abs().max() < 1e-4, name


def test_qlora_on_a_cpu_machine_fails_with_a_clear_message(support_examples, model_cfg, model_cache, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TrainingDeviceError, match="qlora needs a CUDA GPU"):
        train_adapter(support_examples, model_cfg, tiny(method="qlora"), model_cache, tmp_path / "t", seed=1)


def test_examples_without_train_rows_name_the_file(support_examples, model_cfg, model_cache, tmp_path):
    path = tmp_path / "only_test.parquet"
    pl.read_parquet(support_examples).with_columns(pl.lit("test").alias("split")).write_parquet(path)
    with pytest.raises(TrainingDataError, match=r"only_test\.parquet: no train rows"):
        train_adapter(path, model_cfg, tiny(), model_cache, tmp_path / "t", seed=1)


def test_missing_columns_are_named(model_cfg, model_cache, tmp_path):
    path = tmp_path / "bad.parquet"
    pl.DataFrame({"instruction": ["a"], "output": ["b"]}).write_parquet(path)
    with pytest.raises(TrainingDataError, match=r"bad\.parquet: missing Example columns"):
        train_adapter(path, model_cfg, tiny(), model_cache, tmp_path / "t", seed=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "use_dora", "checkpointing"), [("lora", True, True), ("full", False, False)], ids=["dora", "full"]
)
def test_dora_and_full_fine_tuning_train_and_save_loadable_weights(
    support_examples, model_cfg, model_cache, tmp_path, method, use_dora, checkpointing
):
    cfg = tiny(
        method=method,
        max_steps=2,
        eval_every_steps=2,
        gradient_checkpointing=checkpointing,
        lora=LoraConfig(use_dora=use_dora),
        learning_rate=1e-5 if method == "full" else 1e-3,
    )
    out = tmp_path / method
    report = train_adapter(support_examples, model_cfg, cfg, model_cache, out, seed=1)
    assert report.metrics["steps"] == 2
    if method == "full":
        from transformers import AutoModelForCausalLM

        assert AutoModelForCausalLM.from_pretrained(out / "adapter").num_parameters() > 100_000_000
    else:
        config = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert config["use_dora"] is True
        assert any("lora_magnitude_vector" in k for k in adapter_weights(out))
