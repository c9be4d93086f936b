"""The data report: counts per step and reason, redactions, token lengths (PNG), budget, samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from tasks.accounting import AccountingError, top_reasons


@dataclass
class Step:
    """One sub-step's accounting, in candidate examples: in = out + quarantined + deduplicated."""

    name: str
    rows_in: int
    rows_out: int
    rows_quarantined: int = 0
    rows_deduplicated: int = 0

    def check(self) -> Step:
        if self.rows_in != self.rows_out + self.rows_quarantined + self.rows_deduplicated:
            raise AccountingError(f"transform step '{self.name}' does not add up: {self}")
        return self


def token_histogram(n_tokens: pl.DataFrame, max_tokens: int, path: Path) -> None:
    """Histogram of n_tokens per split, with the max_tokens limit drawn in."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for split in ("train", "val", "test"):
        values = n_tokens.filter(pl.col("split") == split)["n_tokens"].to_numpy()
        if values.size:
            ax.hist(values, bins=40, alpha=0.6, label=f"{split} ({values.size})")
    ax.axvline(max_tokens, color="black", linestyle="--", linewidth=1, label=f"max_tokens={max_tokens}")
    ax.set_xlabel("tokens per example (chat template)")
    ax.set_ylabel("examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ↵ ") for c in r) + " |" for r in rows]
    return lines


def render_report(
    steps: list[Step],
    metrics: dict[str, float],
    quarantine: pl.DataFrame,
    examples: pl.DataFrame,
    cost_line: str,
    samples: int = 3,
) -> str:
    """The report as markdown (also shown as a Prefect artifact)."""
    lines = ["# Data report (transform)", "", cost_line, "", "## Accounting (candidate examples)", ""]
    lines += _md_table(
        ["step", "in", "out", "quarantined", "deduplicated"],
        [[s.name, s.rows_in, s.rows_out, s.rows_quarantined, s.rows_deduplicated] for s in steps],
    )
    shape = ("records_", "candidates_", "conversations", "sessions", "turns", "documents", "chunks", "preference_")
    records = [[k, int(v)] for k, v in metrics.items() if k.startswith(shape)]
    lines += ["", "## Records → candidates", "", *_md_table(["count", "value"], records)]
    redactions = [[k.removeprefix("redacted_"), int(v)] for k, v in metrics.items() if k.startswith("redacted_")]
    lines += ["", "## Redactions", "", *_md_table(["type", "count"], redactions)]
    lines += ["", "## Top quarantine reasons", ""]
    lines += (
        _md_table(["reason", "rows"], [[r, c] for r, c in top_reasons(quarantine, 10)])
        if quarantine.height
        else ["none"]
    )
    lines += ["", "## Tokens per example", "", "![token lengths](token_lengths.png)", ""]
    stats = []
    for split in ("train", "val", "test"):
        v = examples.filter(pl.col("split") == split)["n_tokens"].to_numpy()
        if v.size:
            stats.append(
                [
                    split,
                    v.size,
                    int(v.sum()),
                    int(np.mean(v)),
                    int(np.percentile(v, 50)),
                    int(np.percentile(v, 95)),
                    int(v.max()),
                ]
            )
    lines += _md_table(["split", "examples", "tokens", "mean", "p50", "p95", "max"], stats)
    lines += ["", "## Samples", ""]
    for row in examples.filter(pl.col("split") == "train").head(samples).iter_rows(named=True):
        lines += [
            f"**{row['origin']}** ({row['source']}, {row['n_tokens']} tokens)",
            "",
            f"- instruction: {_one_line(row['instruction'])}",
            f"- input: {_one_line(row['input'] or '')}",
            f"- output: {_one_line(row['output'])}",
            "",
        ]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 300) -> str:
    return text[:limit].replace("\n", " ↵ ") + ("…" if len(text) > limit else "")
