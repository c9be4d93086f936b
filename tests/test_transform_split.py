"""Split: a stable hash of the group key; a group never spans two splits."""

from __future__ import annotations

import pytest

from tasks.transform.split import SplitConfigError, assign_splits, group_position

SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_the_same_key_always_gets_the_same_split_whatever_else_is_in_the_data() -> None:
    keys = [f"whatsapp:chat.txt:c{i}" for i in range(500)]
    alone = assign_splits(keys, SHARES)
    grown = assign_splits([*keys, *(f"crm:new.csv:{i}" for i in range(500))], SHARES)
    assert all(grown[k] == alone[k] for k in keys)
    assert group_position("abc") == group_position("abc")


def test_shares_are_roughly_honoured_on_many_groups() -> None:
    split = assign_splits([f"g{i}" for i in range(5000)], SHARES)
    share = {s: sum(v == s for v in split.values()) / 5000 for s in SHARES}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["test"] == pytest.approx(0.1, abs=0.02)


def test_a_small_dataset_still_gets_a_test_and_val_group() -> None:
    split = assign_splits(["a", "b", "c", "d"], SHARES)
    assert set(split.values()) == {"train", "val", "test"}


def test_shares_that_are_not_a_distribution_are_refused() -> None:
    with pytest.raises(SplitConfigError, match="sum to 1"):
        assign_splits(["a"], {"train": 0.8, "val": 0.1})
    with pytest.raises(SplitConfigError):
        assign_splits(["a"], {"train": 0.9, "dev": 0.1})
