"""Tokenizing, masking and packing for training: the loss is taken on output tokens only, and a packed
micro-batch gives exactly the loss of its examples run one by one (no attention across examples)."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from tasks.chat_format import end_of_turn_ids
from tasks.train.batching import (
    IGNORE,
    collate,
    output_loss_sum,
    pack_rows,
    plan_micro_batches,
    tokenize_examples,
)


@pytest.fixture(scope="module")
def base_model(model_cfg, model_cache):
    from tasks.model_loading import load_model

    torch.manual_seed(0)
    return load_model(model_cfg, model_cache).eval()


def _rows(path, split=None):
    frame = pl.read_parquet(path)
    return (frame if split is None else frame.filter(pl.col("split") == split)).to_dicts()


def test_prompt_is_masked_and_reply_with_end_of_turn_is_learned(support_examples, tokenizer):
    row = _rows(support_examples)[0]
    [seq], rejected = tokenize_examples([row], tokenizer, 512, "train")
    assert not rejected
    learned = [t for t in seq.targets if t != IGNORE]
    eot = end_of_turn_ids(tokenizer)
    # exactly the reply and then the end-of-turn: nothing of the prompt is learned
    assert learned == tokenizer(row["output"], add_special_tokens=False)["input_ids"] + eot
    assert tokenizer.eos_token_id in learned[-len(eot) :]
    first_learned = seq.targets.index(learned[0])
    prompt_part = tokenizer.decode(seq.input_ids[: first_learned + 1])
    assert row["instruction"] in prompt_part and row["output"] not in prompt_part
    # targets are the next tokens: where a label is set it equals the following input token
    for t, target in enumerate(seq.targets[:-1]):
        assert target in (IGNORE, seq.input_ids[t + 1])


def test_over_length_rows_are_quarantined_with_their_origin(support_examples, tokenizer):
    rows = _rows(support_examples)[:6]
    rows[2] = {**rows[2], "output": "muito longo " * 200}
    sequences, rejected = tokenize_examples(rows, tokenizer, 128, "train")
    assert len(sequences) == 5 and [s.row for s in sequences] == [0, 1, 3, 4, 5]
    assert len(rejected) == 1
    assert rejected[0]["origin"] == rows[2]["origin"]
    assert "max_seq_len 128" in rejected[0]["reason"]
    assert json.loads(rejected[0]["payload"])["id"] == rows[2]["id"]


def test_packing_fills_rows_without_exceeding_capacity_and_keeps_every_sequence_once():
    lengths = [100, 300, 50, 200, 90, 400, 10, 60]
    rows = pack_rows(lengths, range(len(lengths)), 512)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 512 for row in rows)
    assert len(rows) < len(lengths)  # several examples share a row


def test_epoch_plan_is_a_pure_function_of_the_seed():
    lengths = [30 + (i * 37) % 200 for i in range(40)]
    plan = plan_micro_batches(lengths, 2, 256, True, seed=7)
    assert plan == plan_micro_batches(lengths, 2, 256, True, seed=7)
    assert plan != plan_micro_batches(lengths, 2, 256, True, seed=8)
    assert sorted(i for mb in plan for row in mb for i in row) == list(range(40))


def _one_by_one_loss(model, sequences):
    """The reference: each example alone, through the model's own forward with HF-style labels."""
    total, count = 0.0, 0
    for seq in sequences:
        ids = torch.tensor([seq.input_ids])
        logits = model(input_ids=ids).logits[0]
        targets = torch.tensor(seq.targets)
        keep = targets != IGNORE
        total += float(F.cross_entropy(logits[keep].float(), targets[keep], reduction="sum"))
        count += int(keep.sum())
    return total / count


@pytest.mark.parametrize("packing", [True, False])
@torch.no_grad()
def test_packed_or_grouped_batch_loss_equals_token_weighted_loss_one_by_one(
    support_examples, tokenizer, base_model, packing
):
    rows = _rows(support_examples, "train")[:8]
    sequences, _ = tokenize_examples(rows, tokenizer, 512, "train")
    lengths = [len(s) for s in sequences]
    plan = plan_micro_batches(lengths, 8, 256, packing, seed=3)
    assert len(plan) == 1
    [layout] = plan
    if packing:
        assert any(len(row) > 1 for row in layout), "the test must put several examples in one row"
    batch = collate(sequences, layout, int(tokenizer.pad_token_id))
    assert batch.n_tokens == sum(lengths)
    packed = float(output_loss_sum(base_model, batch)) / batch.n_targets
    assert batch.n_targets == sum(s.n_targets for s in sequences)
    assert packed == pytest.approx(_one_by_one_loss(base_model, sequences), rel=1e-4, abs=1e-4)


@torch.no_grad()
def test_packed_rows_would_leak_without_restarted_positions(support_examples, tokenizer, base_model):
    """Guards the equivalence test: the same row read as one sequence gives a different loss."""
    rows = _rows(support_examples, "train")[:4]
    sequences, _ = tokenize_examples(rows, tokenizer, 512, "train")
    batch = collate(sequences, [[0, 1, 2, 3]], int(tokenizer.pad_token_id))
    leaky = type(batch)(
        batch.input_ids, torch.arange(batch.input_ids.shape[1])[None], batch.targets, batch.n_tokens, batch.n_targets
    )
    isolated = float(output_loss_sum(base_model, batch)) / batch.n_targets
    assert isolated == pytest.approx(_one_by_one_loss(base_model, sequences), rel=1e-4)
    assert float(output_loss_sum(base_model, leaky)) / batch.n_targets != pytest.approx(isolated, rel=1e-3)
