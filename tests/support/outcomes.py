"""Synthetic leads scored into a lake, and their true outcomes (the synthetic generator knows them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from leadscore.api.recording import lake_rows
from leadscore.config import Settings
from leadscore.lake.records import to_record_batch
from leadscore.lake.table import append_segments, load_table
from leadscore.model.bundle import Scorer
from leadscore.outcomes.table import outcome_batch, outcomes_table_config, write_outcomes
from leadscore.scoring import score_columns
from leadscore.training.contract import validate_training_table
from leadscore.training.synth import synthesize


@dataclass(frozen=True, slots=True)
class ScoredLeads:
    """Leads scored into the lake: their ids, when, and their true outcome 1..5."""

    lead_ids: list[str]
    scored_at: datetime
    truth: npt.NDArray[np.int64]


def api_leads(n: int, seed: int, prefix: str = "S") -> tuple[list[dict[str, Any]], npt.NDArray[np.int64]]:
    """`n` synthetic leads as API lead objects (ids prefix0..), and each one's true outcome."""
    table = synthesize(n, seed=seed)
    truth = table.column("outcome").to_numpy()
    custom = [c for c in table.column_names if c.startswith("custom_feature_")]
    leads = []
    for i, row in enumerate(table.drop_columns(["outcome"]).to_pylist()):
        lead = {k: v for k, v in row.items() if k not in custom and v is not None}
        for key, value in lead.items():
            if isinstance(value, datetime):
                lead[key] = value.isoformat()
        lead["custom_features"] = {k: row[k] for k in custom if row[k] is not None}
        lead["lead_id"] = f"{prefix}{i}"
        leads.append(lead)
    return leads, truth


def score_into_lake(
    settings: Settings,
    scorer: Scorer,
    n: int,
    at: datetime,
    *,
    seed: int = 3,
    prefix: str = "S",
    request_id: str = "crm-batch",
    is_test: bool = False,
) -> ScoredLeads:
    """Score `n` synthetic leads at `at` and commit their rows to the lake, as the API records them."""
    table = synthesize(n, seed=seed)
    columns = validate_training_table(table).columns
    columns["lead_id"] = [f"{prefix}{i}" for i in range(n)]
    batch = score_columns(scorer, columns, n, at)
    group = lake_rows(
        batch, columns, request_id=request_id, processing_ms=1.0, is_test=is_test, environment="dev", api_key_id=None
    )
    lake = load_table(settings.lake_table_config())
    append_segments(lake, pa.Table.from_batches([to_record_batch([group])]), [f"{request_id}-{prefix}-{at:%s}"])
    return ScoredLeads(columns["lead_id"], at, table.column("outcome").to_numpy())


def record_outcomes(
    settings: Settings,
    lead_ids: list[str],
    outcomes: list[int],
    occurred_at: datetime,
    commit_id: str = "outcomes",
) -> None:
    """Commit one outcome per lead (converted: outcome 4 or 5) dated `occurred_at`."""
    n = len(lead_ids)
    batch = outcome_batch(
        {
            "lead_id": lead_ids,
            "outcome": outcomes,
            "converted": [o >= 4 for o in outcomes],
            "occurred_at": [occurred_at] * n,
        },
        received_at=occurred_at + timedelta(minutes=1),
        request_id=commit_id,
        source="test",
    )
    write_outcomes(outcomes_table_config(settings), batch, commit_id)
