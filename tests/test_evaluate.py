"""The evaluate stage: scores are right on known cases, the verdict says which way is better, and a
real base-vs-tuned evaluation writes the verdict, samples and metrics register and MLflow read."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import torch

from tasks.config.eval import EvalConfig
from tasks.evaluate import EvaluationDataError, evaluate_models, read_test_rows, rouge_l, verdict


def test_rouge_l_is_the_lcs_f1_on_words():
    assert rouge_l("o prazo é de 2 dias", "o prazo é de 2 dias") == pytest.approx(1.0)
    assert rouge_l("", "qualquer coisa") == 0.0
    assert rouge_l("banana", "laranja") == 0.0
    # LCS("the cat sat", "the cat sat on the mat") = 3 words: P = 1, R = 0.5
    assert rouge_l("The cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_verdict_treats_lower_loss_and_higher_overlap_as_better():
    base = {"loss": 3.0, "perplexity": math.exp(3.0), "rouge_l": 0.20, "chrf": 30.0}
    tuned = {"loss": 2.5, "perplexity": math.exp(2.5), "rouge_l": 0.15, "chrf": 31.0}
    by_loss = verdict("loss", base, tuned)
    assert by_loss["improved"] is True and by_loss["delta"] == pytest.approx(0.5)
    assert by_loss["better_on"] == ["loss", "perplexity", "chrf"]
    by_rouge = verdict("rouge_l", base, tuned)
    assert by_rouge["improved"] is False and by_rouge["delta"] == pytest.approx(-0.05)
    with pytest.raises(ValueError, match="judge_win_rate"):
        verdict("judge_win_rate", base, tuned)


def test_test_rows_are_a_seeded_sample_in_file_order(support_examples):
    rows, available = read_test_rows(support_examples, 3, seed=4)
    assert available == 8 and len(rows) == 3
    assert rows == read_test_rows(support_examples, 3, seed=4)[0]
    origins = [r["origin"] for r in rows]
    assert origins == sorted(origins, key=lambda o: int(o.split("=")[1]))
    assert all(r["split"] == "test" for r in rows)


def test_no_test_rows_is_a_clear_error(support_examples, tmp_path):
    path = tmp_path / "no_test.parquet"
    pl.read_parquet(support_examples).filter(pl.col("split") != "test").write_parquet(path)
    with pytest.raises(EvaluationDataError, match=r"no_test\.parquet: no rows with split == 'test'"):
        read_test_rows(path, 8, seed=1)


@pytest.fixture()
def perturbed_adapter(model_cfg, model_cache, tmp_path):
    """A real PEFT adapter whose LoRA weights are not zero, so tuned and base differ."""
    from peft import LoraConfig, get_peft_model

    from tasks.model_loading import load_model

    torch.manual_seed(0)
    model = get_peft_model(
        load_model(model_cfg, model_cache),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    path = tmp_path / "adapter"
    model.save_pretrained(path)
    return path


@pytest.mark.slow
def test_base_and_tuned_are_scored_side_by_side(support_examples, perturbed_adapter, model_cfg, model_cache, tmp_path):
    from tasks.model_loading import load_model, load_tokenizer
    from tasks.train.batching import corpus_loss, tokenize_examples

    cfg = EvalConfig(max_examples=4, max_new_tokens=8, metric="chrf")
    out = tmp_path / "eval"
    report = evaluate_models(support_examples, perturbed_adapter, model_cfg, cfg, model_cache, out, seed=2)

    assert report.stage == "eval" and (report.rows_in, report.rows_out) == (4, 4)
    names = set(report.all_metrics())
    for name in ("base_loss", "tuned_loss", "base_rouge_l", "tuned_rouge_l", "base_chrf", "tuned_chrf"):
        assert f"eval/{name}" in names
    result = json.loads((out / "verdict.json").read_text())
    assert result["metric"] == "chrf"
    assert result["delta"] == pytest.approx(result["tuned"]["chrf"] - result["base"]["chrf"])
    assert result["improved"] == (result["delta"] > 0)

    # "base" really is the base model: its loss matches the plain model on the same rows
    rows, _ = read_test_rows(support_examples, 4, seed=2)
    tokenizer = load_tokenizer(model_cfg, model_cache)
    sequences, _ = tokenize_examples(rows, tokenizer, 1024, "eval")
    with torch.no_grad():
        total, count = corpus_loss(
            load_model(model_cfg, model_cache).eval(), sequences, tokenizer.pad_token_id, 8, 1024, "cpu"
        )
    assert result["base"]["loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["tuned"]["loss"] != pytest.approx(result["base"]["loss"], rel=1e-3)
    assert result["base"]["perplexity"] == pytest.approx(math.exp(result["base"]["loss"]))

    samples = pl.read_parquet(out / "samples.parquet")
    assert samples.height == 4
    assert {"prompt", "reference", "base_answer", "tuned_answer", "base_rouge_l", "tuned_chrf"} <= set(samples.columns)
    assert samples["reference"].to_list() == [r["output"] for r in rows]
    assert all(samples["base_answer"].str.len_chars() > 0)
    assert "| prompt | reference | base | tuned |" in (out / "samples.md").read_text()
