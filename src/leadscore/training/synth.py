"""Deterministic synthetic leads with realistic structure: fit, seniority and engagement drive the outcome.

The columns are the API's field names (custom features flattened) plus `outcome` (1..5), so a file written
here trains exactly like a CRM export would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.errors import LeadscoreError
from leadscore.features.spec import (
    COMPANY_SIZES,
    CUSTOM_FIELDS,
    GEOGRAPHIES,
    INDUSTRIES,
    SENIORITY_LEVELS,
)
from leadscore.training.contract import OUTCOME, validate_training_table

AS_OF: Final = datetime(2026, 1, 1, tzinfo=UTC)

_FUNCTIONS: Final = ("Marketing", "Sales", "Engineering", "IT", "Product", "Finance", "Operations", "HR")
_C_TITLES: Final = {
    "Marketing": "Chief Marketing Officer",
    "Sales": "Chief Revenue Officer",
    "Engineering": "CTO",
    "IT": "CIO",
    "Product": "Chief Product Officer",
    "Finance": "CFO",
    "Operations": "COO",
    "HR": "Chief People Officer",
}
# Per seniority level: the job level its titles are written at.
_TITLE_TEMPLATES: Final = (
    "{f} Coordinator",
    "{f} Specialist",
    "Senior {f} Specialist",
    "{f} Manager",
    "Director of {f}",
    "VP {f}",
    "{c}",
)
# Signal carried by a handful of custom features (the rest are noise, as in real CRM extensions).
_CUSTOM_WEIGHTS: Final = {1: 0.35, 2: 0.25, 3: -0.2, 5: 0.15, 8: 0.1}
# Share of leads per score 1..5 (cumulative cut points of the latent propensity).
_CUTS: Final = (0.35, 0.60, 0.80, 0.93)


def synthesize(rows: int, seed: int = 7, missing_rate: float = 0.04) -> pa.Table:
    """`rows` synthetic leads with an `outcome` column; the same seed gives the same table."""
    rng = np.random.default_rng(seed)
    size = rng.choice(len(COMPANY_SIZES), rows, p=[0.25, 0.25, 0.22, 0.16, 0.12])
    seniority = np.clip(rng.choice(len(SENIORITY_LEVELS), rows, p=[0.2, 0.22, 0.18, 0.18, 0.11, 0.07, 0.04]), 0, 6)
    industry = rng.choice(len(INDUSTRIES), rows)
    geography = rng.choice(len(GEOGRAPHIES), rows, p=[0.45, 0.28, 0.15, 0.06, 0.03, 0.03])
    function = rng.choice(len(_FUNCTIONS), rows, p=[0.3, 0.2, 0.12, 0.1, 0.08, 0.08, 0.07, 0.05])
    # Titles mostly agree with seniority, sometimes one step off, as in real CRMs.
    title_level = np.clip(seniority + rng.choice([-1, 0, 0, 0, 1], rows), 0, 6)
    titles = [
        _TITLE_TEMPLATES[lvl].format(f=_FUNCTIONS[fn], c=_C_TITLES[_FUNCTIONS[fn]])
        for lvl, fn in zip(title_level.tolist(), function.tolist(), strict=True)
    ]

    employees = np.round(np.exp(rng.normal(np.log([8, 40, 250, 1500, 12000])[size], 0.5))).astype(np.int64)
    revenue = np.round(employees * np.exp(rng.normal(np.log(180_000), 0.6, rows)), 2)

    engagement = rng.normal(0.0, 1.0, rows)
    email = 1.0 / (1.0 + np.exp(-(engagement + rng.normal(0, 0.7, rows))))
    sessions = rng.poisson(np.exp(1.2 + 0.6 * engagement))
    pages = sessions * (1 + rng.poisson(np.clip(2.0 + engagement, 0.1, None)))
    time_on_site = np.round(pages * rng.gamma(2.0, 0.9, rows), 1)
    form_fills = rng.poisson(np.exp(-0.6 + 0.7 * engagement))
    downloads = rng.poisson(np.exp(-0.2 + 0.6 * engagement))
    touchpoints = rng.poisson(np.exp(1.3 + 0.3 * engagement))
    days_since = rng.exponential(40.0 * np.exp(-0.4 * engagement))
    existing = rng.random(rows) < 0.15
    industry_effect = rng.normal(0, 0.25, len(INDUSTRIES))[industry]
    custom = rng.normal(0.0, 1.0, (rows, len(CUSTOM_FIELDS))) * rng.uniform(0.5, 2.0, len(CUSTOM_FIELDS))
    custom_signal = sum(w * custom[:, i - 1] for i, w in _CUSTOM_WEIGHTS.items())

    latent = (
        0.35 * (size - 2)
        + 0.35 * (seniority - 3)
        + 0.15 * (title_level - 3)
        + industry_effect
        + 0.9 * engagement
        + 0.25 * form_fills
        - 0.35 * np.log1p(days_since)
        + 0.4 * existing
        + custom_signal
        + rng.normal(0.0, 0.8, rows)
    )
    outcome = 1 + np.searchsorted(np.quantile(latent, _CUTS), latent)

    interaction = [AS_OF - timedelta(days=float(d)) for d in days_since.tolist()]
    columns: dict[str, Any] = {
        "company_size": [COMPANY_SIZES[i] for i in size.tolist()],
        "industry": [INDUSTRIES[i] for i in industry.tolist()],
        "job_title": titles,
        "seniority_level": [SENIORITY_LEVELS[i] for i in seniority.tolist()],
        "geography": [GEOGRAPHIES[i] for i in geography.tolist()],
        "email_engagement_score": np.round(email, 4),
        "website_sessions": sessions,
        "pages_viewed": pages,
        "time_on_site": time_on_site,
        "form_fills": form_fills,
        "content_downloads": downloads,
        "campaign_touchpoints": touchpoints,
        "last_campaign_interaction": interaction,
        "account_revenue": revenue,
        "account_employees": employees,
        "existing_customer": existing,
    }
    for i, spec in enumerate(CUSTOM_FIELDS):
        columns[spec.name] = np.round(custom[:, i], 4)

    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        array = pa.array(values)
        mask = pa.array(rng.random(rows) < missing_rate)
        arrays[name] = pc.if_else(mask, pa.nulls(rows, array.type), array)
    arrays[OUTCOME] = pa.array(outcome.astype(np.int64))
    return pa.table(arrays)


TABLE_SUFFIXES: Final = (".parquet", ".csv")


def check_table_path(path: Path) -> None:
    """LeadscoreError unless the name ends in a suffix `write_table` writes (.parquet or .csv)."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise LeadscoreError(f"{path.name}: the file name must end in .parquet or .csv (got {suffix or 'no suffix'!r})")


def write_table(table: pa.Table, path: Path) -> None:
    """Write as Parquet or CSV, by the name's suffix; any other suffix is a LeadscoreError (nothing written)."""
    check_table_path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


def table_to_columns(table: pa.Table) -> dict[str, list[Any]]:
    """The encoder's columns from a table with an outcome, read through the contract; absent fields are missing."""
    return validate_training_table(table, allow_missing=True).columns
