"""Leads for load tests: realistic variety from the synthetic generator, in the API's request shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS
from leadscore.training.synth import synthesize


def synthetic_leads(n: int, seed: int, prefix: str = "load-lead") -> list[dict[str, Any]]:
    """`n` leads with correlated firmographics and engagement (missing values left out), ids `<prefix>-<i>`."""
    leads: list[dict[str, Any]] = []
    for i, row in enumerate(synthesize(n, seed=seed).to_pylist()):
        lead: dict[str, Any] = {"lead_id": f"{prefix}-{i}"}
        for spec in CORE_FIELDS:
            value = row[spec.name]
            if value is not None:
                lead[spec.name] = value.isoformat() if isinstance(value, datetime) else value
        lead["custom_features"] = {f.name: row[f.name] for f in CUSTOM_FIELDS if row[f.name] is not None}
        leads.append(lead)
    return leads
