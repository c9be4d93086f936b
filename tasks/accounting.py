"""Nothing lost: every stage reports rows_in = rows_out + rows_quarantined + rows_deduplicated.

Quarantined rows are written with the stage, the reason and the row's origin, so a user can see
why each row did not make it; `StageReport` carries the counts the flow logs as `stage/...` metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

QUARANTINE_SCHEMA = {
    "stage": pl.String,
    "source": pl.String,
    "origin": pl.String,
    "reason": pl.String,
    "payload": pl.String,  # the row as JSON, so it can be fixed and fed back
}


class AccountingError(AssertionError):
    """A stage's counts do not add up: rows were lost or invented."""


@dataclass
class StageReport:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_deduplicated: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path under the stage folder
    notes: list[str] = field(default_factory=list)

    def check(self) -> StageReport:
        total = self.rows_out + self.rows_quarantined + self.rows_deduplicated
        if self.rows_in != total:
            raise AccountingError(
                f"stage '{self.stage}': rows_in={self.rows_in} but out+quarantined+deduplicated={total}"
            )
        return self

    def all_metrics(self) -> dict[str, float]:
        """The counts and extra metrics, named `stage/name` for MLflow."""
        counts = {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_quarantined": self.rows_quarantined,
            "rows_deduplicated": self.rows_deduplicated,
        }
        return {f"{self.stage}/{k}": float(v) for k, v in {**counts, **self.metrics}.items()}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> StageReport:
        return cls(**json.loads(path.read_text()))


def quarantine_frame(stage: str, rows: pl.DataFrame, reason: str | pl.Expr) -> pl.DataFrame:
    """Quarantine rows of a frame that has `source` and `origin`, keeping the whole row as JSON."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    payload_cols = [c for c in rows.columns]
    return rows.select(
        pl.lit(stage).alias("stage"),
        pl.col("source").cast(pl.String) if "source" in rows.columns else pl.lit(None, pl.String).alias("source"),
        pl.col("origin").cast(pl.String) if "origin" in rows.columns else pl.lit(None, pl.String).alias("origin"),
        reason_expr.cast(pl.String).alias("reason"),
        pl.struct(payload_cols).struct.json_encode().alias("payload") if payload_cols else pl.lit("{}"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def quarantine_rows(stage: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Quarantine plain dict rows; each needs `source`, `origin`, `reason` and may carry `payload`."""
    return pl.DataFrame(
        [
            {
                "stage": stage,
                "source": r.get("source"),
                "origin": r.get("origin"),
                "reason": r["reason"],
                "payload": r.get("payload")
                if isinstance(r.get("payload"), str)
                else json.dumps(r.get("payload"), ensure_ascii=False, default=str),
            }
            for r in rows
        ],
        schema=QUARANTINE_SCHEMA,
    )


def write_quarantine(frames: list[pl.DataFrame], path: Path) -> int:
    """Write the quarantine parquet (empty file with the schema when nothing was quarantined)."""
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    frame.write_parquet(path)
    return frame.height


def top_reasons(quarantine: pl.DataFrame, n: int = 5) -> list[tuple[str, int]]:
    counts = quarantine.group_by("reason").len().sort("len", descending=True).head(n)
    return [(str(r), int(c)) for r, c in counts.iter_rows()]
