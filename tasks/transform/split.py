"""Deterministic train/val/test by a stable hash of the grouping key (a conversation, a document).

The split is a property of the group, fixed before any example is built from it, so no conversation
or document spans two splits, and a group keeps its split when new data arrives (the hash of a key
never changes). The seed is deliberately not part of the hash: runs with different seeds are
evaluated on the same test set.
"""

from __future__ import annotations

import hashlib

from tasks.records import SPLITS


class SplitConfigError(ValueError):
    """The configured split shares are not a distribution over train/val/test."""


def group_position(key: str) -> float:
    """A stable number in [0, 1) for a grouping key (sha256: the same on every machine and run)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def split_shares(shares: dict[str, float]) -> list[tuple[str, float]]:
    """Validated (split, share) pairs in SPLITS order; shares must be ≥ 0 and sum to 1."""
    unknown = set(shares) - set(SPLITS)
    if unknown or any(v < 0 for v in shares.values()) or abs(sum(shares.values()) - 1.0) > 1e-6:
        raise SplitConfigError(
            f"data.transform.split={shares}: use the keys {list(SPLITS)} with shares ≥ 0 that sum to 1"
        )
    return [(name, float(shares.get(name, 0.0))) for name in SPLITS]


def assign_splits(keys: list[str], shares: dict[str, float]) -> dict[str, str]:
    """Group key → split. With few groups, a split with a share > 0 that got none takes one group

    from the largest split (the one whose position lies nearest), so a small demo still has a test set.
    """
    ordered = split_shares(shares)
    positions = {key: group_position(key) for key in sorted(set(keys))}
    result: dict[str, str] = {}
    for key, pos in positions.items():
        edge = 0.0
        result[key] = ordered[-1][0]
        for name, share in ordered:
            edge += share
            if pos < edge:
                result[key] = name
                break
    wanted = [name for name, share in ordered if share > 0]
    if len(positions) >= len(wanted):
        for name in wanted:
            members = {s: [k for k, v in result.items() if v == s] for s in wanted}
            if members[name]:
                continue
            donor = max(wanted, key=lambda s: (len(members[s]), s))
            if len(members[donor]) < 2:
                continue
            start = sum(share for split, share in ordered[: [s for s, _ in ordered].index(name)])
            moved = min(members[donor], key=lambda k: (abs(positions[k] - start), k))
            result[moved] = name
    return result
