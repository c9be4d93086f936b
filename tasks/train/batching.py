"""Examples → token sequences → packed micro-batches, and the loss on output tokens only.

Packing puts several examples in one row, with positions restarting at 0 for each. Given restarted
`position_ids` and no attention mask, transformers builds a block-diagonal causal mask (sdpa, eager)
or varlen calls (flash-attention), so no token attends across an example boundary. Logits are only
computed where a token is learned: the vocabulary projection is a small model's biggest matmul.
Train and evaluate both go through here, so both measure the same loss.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from tasks.chat_format import end_of_turn_ids, training_ids

IGNORE = -100


@dataclass(frozen=True)
class TokenSequence:
    """One example as tokens; `targets[t]` is the label of token t+1 (IGNORE where nothing is learned)."""

    row: int  # the example's row in its frame
    input_ids: list[int]
    targets: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        return sum(t != IGNORE for t in self.targets)


def tokenize_examples(
    rows: list[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_seq_len: int, stage: str
) -> tuple[list[TokenSequence], list[dict[str, Any]]]:
    """Tokenize with the shared chat template; rows over `max_seq_len` come back as quarantine rows."""
    eot = end_of_turn_ids(tokenizer)
    sequences: list[TokenSequence] = []
    rejected: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        ids, labels = training_ids(tokenizer, row, eot)
        if len(ids) > max_seq_len:
            rejected.append(
                {
                    "source": row.get("source"),
                    "origin": row.get("origin"),
                    "reason": f"{stage}: {len(ids)} tokens > max_seq_len {max_seq_len} "
                    f"(raise {stage}.max_seq_len or shorten the example)",
                    "payload": json.dumps(dict(row), ensure_ascii=False, default=str),
                }
            )
            continue
        # shift once here, so a packed row needs no shifting across example boundaries
        sequences.append(TokenSequence(row=i, input_ids=ids, targets=[*labels[1:], IGNORE]))
    return sequences, rejected


def pack_rows(lengths: list[int], order: Iterable[int], capacity: int) -> list[list[int]]:
    """First-fit packing in the given order: rows of sequence indices whose lengths sum to <= capacity."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return rows


def group_by_length(lengths: list[int], order: list[int], batch_rows: int) -> list[list[int]]:
    """One sequence per row, neighbours of similar length (sorted within windows of 50 batches)."""
    window = 50 * batch_rows
    rows: list[list[int]] = []
    for start in range(0, len(order), window):
        rows += [[i] for i in sorted(order[start : start + window], key=lambda i: lengths[i])]
    return rows


def plan_micro_batches(
    lengths: list[int], batch_rows: int, max_seq_len: int, packing: bool, seed: int
) -> list[list[list[int]]]:
    """One epoch's micro-batches (lists of rows of sequence indices), a pure function of the seed."""
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    if packing:
        rows = pack_rows(lengths, order, max_seq_len)
        return [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)]
    rows = group_by_length(lengths, order, batch_rows)
    batches = [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)]
    # sorted windows would give a length ramp inside every window: shuffle the batches themselves
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    return [batches[i] for i in shuffle]


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (rows, length)
    position_ids: torch.Tensor  # restart at 0 for every packed example
    targets: torch.Tensor  # IGNORE on prompt tokens, padding and the last token of each example
    n_tokens: int  # real tokens (no padding)
    n_targets: int  # tokens the loss is taken on

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.targets.to(device),
            self.n_tokens,
            self.n_targets,
        )


def collate(sequences: list[TokenSequence], rows: list[list[int]], pad_id: int) -> MicroBatch:
    """Concatenate each row's sequences and right-pad rows to the longest one.

    Padding continues the last example's positions, so each unpacked row stays one sequence under a
    plain causal mask; nothing real attends to padding because it comes after.
    """
    width = max(sum(len(sequences[i]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    tgt = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    n_tokens = n_targets = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            seq = sequences[i]
            n = len(seq)
            ids[r, at : at + n] = torch.tensor(seq.input_ids)
            pos[r, at : at + n] = torch.arange(n)
            tgt[r, at : at + n] = torch.tensor(seq.targets)
            at += n
            n_targets += seq.n_targets
        n_tokens += at
        last = int(pos[r, at - 1])
        pos[r, at:] = torch.arange(last + 1, last + 1 + width - at)
    return MicroBatch(ids, pos, tgt, n_tokens, n_targets)


def output_loss_sum(model: torch.nn.Module, batch: MicroBatch) -> torch.Tensor:
    """Summed cross-entropy over the learned tokens of a micro-batch (divide by the step's token count)."""
    keep = batch.targets != IGNORE
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, logits_to_keep=keep, use_cache=False)
    return F.cross_entropy(out.logits.float(), batch.targets[keep], reduction="sum")


@torch.no_grad()
def corpus_loss(
    model: torch.nn.Module,
    sequences: list[TokenSequence],
    pad_id: int,
    batch_rows: int,
    max_seq_len: int,
    device: torch.device | str,
    autocast: torch.autocast | None = None,
) -> tuple[float, int]:
    """Token-weighted loss over all learned tokens of `sequences` (summed CE, token count)."""
    lengths = [len(s) for s in sequences]
    rows = pack_rows(lengths, sorted(range(len(sequences)), key=lambda i: -lengths[i]), max_seq_len)
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_rows):
        batch = collate(sequences, rows[start : start + batch_rows], pad_id).to(device)
        with autocast or torch.autocast(str(torch.device(device).type), enabled=False):
            total += float(output_loss_sum(model, batch))
        count += batch.n_targets
    return total, count
