"""The outcome contract: one outcome as the API and the import command take it, and the problems found in a batch.

Both entrances validate through `validate_outcomes`, so an outcome means the same thing however it arrives; the
import command first reads CRM-style cells (`yes`, `1`, empty) into these types (`leadscore.outcomes.importer`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_OUTCOMES: Final = 1_000
# An outcome dated later than this past the server's clock is refused: a client clock a little ahead is not.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
_ISO_WITH_ZONE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$")


def _require_zoned_iso(value: object) -> object:
    """ISO 8601 text with a zone: an outcome's time without one could be any of 24 hours."""
    if not isinstance(value, str) or not _ISO_WITH_ZONE.match(value):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 date-time string with a zone (Z or +hh:mm)"
        )
    return value


def _not_in_the_future(value: datetime) -> datetime:
    try:
        moment = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp is out of range once converted to UTC") from exc
    if moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise PydanticCustomError("datetime_future", "occurred_at is in the future")
    return moment


def _reject_text_and_bool(value: object) -> object:
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


OccurredAt = Annotated[datetime, BeforeValidator(_require_zoned_iso), AfterValidator(_not_in_the_future)]
Score = Annotated[int, Field(ge=1, le=5), BeforeValidator(_reject_text_and_bool)]
EXAMPLE_OUTCOME: Final[dict[str, Any]] = {
    "lead_id": "crm-00042",
    "outcome": 5,
    "converted": True,
    "occurred_at": "2026-11-30T16:20:00Z",
    "source": "salesforce",
    "stage": "closed_won",
}


class OutcomeIn(BaseModel):
    """What became of one scored lead: an outcome 1..5 on the score's scale and/or whether it converted."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [EXAMPLE_OUTCOME],
            # The rule of `_outcome_or_converted`, stated in the contract: one of the two, not null.
            "anyOf": [
                {"required": ["outcome"], "properties": {"outcome": {"type": "integer"}}},
                {"required": ["converted"], "properties": {"converted": {"type": "boolean"}}},
            ],
        },
    )

    lead_id: str = Field(min_length=1, max_length=128, description="The lead's id, as sent when it was scored.")
    outcome: Score | None = Field(default=None, description="Outcome 1..5 on the score's scale (5: best).")
    converted: StrictBool | None = Field(default=None, description="Whether the lead converted.")
    occurred_at: OccurredAt = Field(
        description="When it happened: ISO 8601 with a zone, not in the future (a few minutes of clock skew pass)."
    )
    source: str | None = Field(default=None, max_length=64, description="Where it comes from (e.g. the CRM).")
    stage: str | None = Field(default=None, max_length=64, description="The CRM stage (e.g. closed_won).")

    @model_validator(mode="after")
    def _outcome_or_converted(self) -> Self:
        if self.outcome is None and self.converted is None:
            raise PydanticCustomError("missing", "give outcome (1..5), converted (true/false) or both")
        return self


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of one item: its 0-based index, the field (None: the item as a whole) and what is wrong."""

    index: int
    field: str | None
    message: str
    type: str


def validate_outcomes(items: Sequence[Any]) -> tuple[list[OutcomeIn], list[Problem]]:
    """Every item validated: the valid ones, and every problem of every invalid one (by index and field)."""
    valid: list[OutcomeIn] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        try:
            valid.append(OutcomeIn.model_validate(item))
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                loc = [str(p) for p in error["loc"]]
                problems.append(Problem(index, ".".join(loc) or None, error["msg"], error["type"]))
    return valid, problems


def to_columns(outcomes: Sequence[OutcomeIn]) -> dict[str, list[Any]]:
    """Valid outcomes as columns (field name -> one value per outcome), what the outcomes table is built from."""
    return {name: [getattr(o, name) for o in outcomes] for name in OutcomeIn.model_fields}
