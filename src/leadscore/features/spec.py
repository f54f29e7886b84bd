"""The feature spec: the one place that declares every input field and every model input.

Validation (api/schemas.py), encoding (features/encode.py), training, the data-lake columns, the Athena
DDL, `GET /api/v1/model` and the docs are all derived from the declarations below.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    """The type of a raw input field, as seen on the wire and in the lake."""

    CATEGORY = "category"  # string matched against a vocabulary
    TEXT = "text"  # free text (job title), parsed into engineered features
    INT = "int"  # non-negative integer count
    FLOAT = "float"  # finite real number
    BOOL = "bool"
    TIMESTAMP = "timestamp"  # ISO 8601; no offset means UTC


class Group(StrEnum):
    """What a raw field says about a lead, for explanations: fit (who they are) or engagement (what they did)."""

    COMPANY = "company"
    INDUSTRY = "industry"
    TITLE = "title"
    SENIORITY = "seniority"
    GEOGRAPHY = "geography"
    ACCOUNT = "account"
    EMAIL = "email"
    WEB = "web"
    CONTENT = "content"
    CAMPAIGN = "campaign"
    RECENCY = "recency"
    CUSTOM = "custom"

    @property
    def driver(self) -> str:
        """The driver this group adds to: fit, engagement or custom."""
        if self in _FIT_GROUPS:
            return "fit"
        return "custom" if self is Group.CUSTOM else "engagement"


_FIT_GROUPS: Final = frozenset(
    {Group.COMPANY, Group.INDUSTRY, Group.TITLE, Group.SENIORITY, Group.GEOGRAPHY, Group.ACCOUNT}
)
DRIVERS: Final = ("fit", "engagement", "custom")


@dataclass(frozen=True, slots=True)
class InputField:
    """One raw input field of a lead (a business field, in explanations, under `label`)."""

    name: str
    kind: Kind
    description: str
    minimum: float | None = None
    maximum: float | None = None
    vocabulary: tuple[str, ...] = ()
    unit: str | None = None
    max_length: int | None = None
    custom: bool = False
    group: Group = Group.CUSTOM
    label: str = ""  # how a marketing user names the field; the name, spaced and capitalised, when empty

    @property
    def display(self) -> str:
        """The field's name for people ("Seniority", "Form fills")."""
        return self.label or self.name.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class EngineeredFeature:
    """One model input column, computed from the raw fields."""

    name: str
    description: str
    integer: bool = False  # stored as int in the lake (codes, ordinals, flags)
    # The raw fields it is computed from; an explanation splits the input's contribution evenly between them.
    # Empty means the raw field of the same name.
    sources: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """The raw input fields this model input is derived from."""
        return self.sources or (self.name,)


MAX_TEXT_LENGTH: Final = 200
N_CUSTOM_FEATURES: Final = 34
SCORES: Final = (1, 2, 3, 4, 5)

COMPANY_SIZES: Final = ("Startup", "Small", "Medium", "Large", "Enterprise")
INDUSTRIES: Final = (
    "Technology",
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Government",
    "Media",
    "Telecommunications",
    "Energy",
    "Professional Services",
    "Other",
)
SENIORITY_LEVELS: Final = ("Entry", "Mid-Level", "Senior", "Manager", "Director", "VP", "Executive")
GEOGRAPHIES: Final = (
    "North America",
    "Europe",
    "Asia Pacific",
    "Latin America",
    "Middle East",
    "Africa",
)
# Job functions and levels derived from the free-text job title (features/jobtitle.py).
JOB_FUNCTIONS: Final = (
    "marketing",
    "sales",
    "engineering",
    "it",
    "product",
    "finance",
    "operations",
    "hr",
    "executive",
    "other",
)
JOB_LEVELS: Final = ("individual", "senior", "manager", "director", "vp", "c-level")

CORE_FIELDS: Final[tuple[InputField, ...]] = (
    InputField(
        "company_size",
        Kind.CATEGORY,
        "Size band of the lead's company.",
        group=Group.COMPANY,
        vocabulary=COMPANY_SIZES,
        max_length=MAX_TEXT_LENGTH,
    ),
    InputField(
        "industry",
        Kind.CATEGORY,
        "Industry of the lead's company.",
        group=Group.INDUSTRY,
        vocabulary=INDUSTRIES,
        max_length=MAX_TEXT_LENGTH,
    ),
    InputField(
        "job_title",
        Kind.TEXT,
        "Free-text job title; function and level are derived from it.",
        group=Group.TITLE,
        max_length=MAX_TEXT_LENGTH,
    ),
    InputField(
        "seniority_level",
        Kind.CATEGORY,
        "Seniority of the contact.",
        group=Group.SENIORITY,
        label="Seniority",
        vocabulary=SENIORITY_LEVELS,
        max_length=MAX_TEXT_LENGTH,
    ),
    InputField(
        "geography",
        Kind.CATEGORY,
        "Region of the lead.",
        group=Group.GEOGRAPHY,
        vocabulary=GEOGRAPHIES,
        max_length=MAX_TEXT_LENGTH,
    ),
    InputField(
        "email_engagement_score",
        Kind.FLOAT,
        "Email engagement, 0 (none) to 1 (every email opened and clicked).",
        group=Group.EMAIL,
        minimum=0.0,
        maximum=1.0,
    ),
    InputField("website_sessions", Kind.INT, "Website sessions.", minimum=0, group=Group.WEB),
    InputField("pages_viewed", Kind.INT, "Pages viewed across sessions.", minimum=0, group=Group.WEB),
    InputField("time_on_site", Kind.FLOAT, "Total time on site.", minimum=0.0, unit="minutes", group=Group.WEB),
    InputField("form_fills", Kind.INT, "Forms submitted.", minimum=0, group=Group.CONTENT),
    InputField("content_downloads", Kind.INT, "Content assets downloaded.", minimum=0, group=Group.CONTENT),
    InputField("campaign_touchpoints", Kind.INT, "Campaign touchpoints.", minimum=0, group=Group.CAMPAIGN),
    InputField(
        "last_campaign_interaction",
        Kind.TIMESTAMP,
        "Time of the last campaign interaction (ISO 8601; no offset means UTC).",
        group=Group.RECENCY,
    ),
    InputField("account_revenue", Kind.FLOAT, "Annual account revenue.", minimum=0.0, unit="USD", group=Group.ACCOUNT),
    InputField("account_employees", Kind.INT, "Employees at the account.", minimum=0, group=Group.ACCOUNT),
    InputField("existing_customer", Kind.BOOL, "Whether the account is already a customer.", group=Group.ACCOUNT),
)

CUSTOM_FIELDS: Final[tuple[InputField, ...]] = tuple(
    InputField(
        f"custom_feature_{i}",
        Kind.FLOAT,
        f"Domain-specific numeric signal {i}.",
        custom=True,
    )
    for i in range(1, N_CUSTOM_FEATURES + 1)
)

INPUT_FIELDS: Final = CORE_FIELDS + CUSTOM_FIELDS
CORE_BY_NAME: Final = {f.name: f for f in CORE_FIELDS}
CATEGORY_FIELDS: Final = tuple(f for f in CORE_FIELDS if f.kind is Kind.CATEGORY)

# Model inputs, in the order of the model's columns. Codes of unordered categories follow vocabulary order;
# ordinals start at 1. Unknown or missing values are NaN (XGBoost's missing value).
ENGINEERED_FEATURES: Final[tuple[EngineeredFeature, ...]] = (
    EngineeredFeature(
        "company_size_ordinal", "Company size band, 1 (Startup) to 5 (Enterprise).", True, sources=("company_size",)
    ),
    EngineeredFeature("industry_code", "Index of the industry in its vocabulary.", True, sources=("industry",)),
    EngineeredFeature(
        "job_function_code", "Index of the job function derived from the title.", True, sources=("job_title",)
    ),
    EngineeredFeature(
        "job_level_ordinal",
        "Level derived from the title, 1 (individual) to 6 (C-level).",
        True,
        sources=("job_title",),
    ),
    EngineeredFeature(
        "seniority_ordinal", "Seniority level, 1 (Entry) to 7 (Executive).", True, sources=("seniority_level",)
    ),
    EngineeredFeature("geography_code", "Index of the geography in its vocabulary.", True, sources=("geography",)),
    EngineeredFeature("email_engagement_score", "Email engagement, as given."),
    EngineeredFeature("website_sessions", "Website sessions, as given."),
    EngineeredFeature("pages_viewed", "Pages viewed, as given."),
    EngineeredFeature("time_on_site", "Minutes on site, as given."),
    EngineeredFeature("form_fills", "Forms submitted, as given."),
    EngineeredFeature("content_downloads", "Downloads, as given."),
    EngineeredFeature("campaign_touchpoints", "Campaign touchpoints, as given."),
    EngineeredFeature(
        "days_since_last_interaction",
        "Days from the last campaign interaction to scoring time.",
        sources=("last_campaign_interaction",),
    ),
    EngineeredFeature("log_account_revenue", "ln(1 + account revenue).", sources=("account_revenue",)),
    EngineeredFeature("log_account_employees", "ln(1 + account employees).", sources=("account_employees",)),
    EngineeredFeature(
        "revenue_per_employee",
        "Account revenue divided by employees (missing if 0 employees).",
        sources=("account_revenue", "account_employees"),
    ),
    EngineeredFeature(
        "pages_per_session",
        "Pages viewed per website session (missing if 0 sessions).",
        sources=("pages_viewed", "website_sessions"),
    ),
    EngineeredFeature(
        "minutes_per_session",
        "Minutes on site per session (missing if 0 sessions).",
        sources=("time_on_site", "website_sessions"),
    ),
    EngineeredFeature(
        "conversion_actions", "Form fills plus content downloads.", sources=("form_fills", "content_downloads")
    ),
    EngineeredFeature("existing_customer", "1 if the account is a customer, else 0.", True),
    *(EngineeredFeature(f.name, f"{f.description} As given.") for f in CUSTOM_FIELDS),
)
ENGINEERED_NAMES: Final = tuple(f.name for f in ENGINEERED_FEATURES)
N_MODEL_INPUTS: Final = len(ENGINEERED_FEATURES)


_NOT_FINGERPRINTED: Final = frozenset({"group", "label", "sources"})


# How CSV files and CRM exports write a boolean field, compared trimmed and case-folded: `leadscore score`, training
# and the outcomes importer read text alike (JSON requests carry real booleans, and the API takes only those).
TRUE_TEXT: Final = ("true", "yes", "1")
FALSE_TEXT: Final = ("false", "no", "0")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """The whole spec as one value, so it can be fingerprinted and published."""

    inputs: tuple[InputField, ...] = INPUT_FIELDS
    engineered: tuple[EngineeredFeature, ...] = ENGINEERED_FEATURES
    job_functions: tuple[str, ...] = JOB_FUNCTIONS
    job_levels: tuple[str, ...] = JOB_LEVELS
    scores: tuple[int, ...] = field(default=SCORES)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready description (used by `GET /api/v1/model` and the fingerprint)."""
        return asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that changes the meaning of a model input column.

        How explanations name and group the fields (`group`, `label`, `sources`) is left out: changing it changes no
        model input, so it must not refuse a trained bundle.
        """
        data = self.as_dict()
        for part in ("inputs", "engineered"):
            entries: list[dict[str, object]] = data[part]  # type: ignore[assignment]
            data[part] = [{k: v for k, v in entry.items() if k not in _NOT_FINGERPRINTED} for entry in entries]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


SPEC: Final = FeatureSpec()
