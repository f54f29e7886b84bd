"""Which columns of a table or file are read as leads, under which lead field names, and what is left out.

Every path that scores tables reads the API's lead fields by name (`company_size`, `custom_feature_7`): the batch
command, `score_table` and Spark. A CRM export names its columns its own way (`Company Size`, `Record ID`): a
mapping reads a column as a field (`leadscore score --column 'Company Size=company_size'`, `score_dataframe(...,
columns=...)`). Input in which no column is a lead field is refused (scoring it would score every row on nothing);
the fields an input lacks and the columns ignored are reported in a batch run's summary, with a rename for each
ignored column whose name reads as a missing field.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from leadscore.errors import LeadscoreError
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, INPUT_FIELDS

# The columns a batch reads: the API's lead fields by the same names (custom features as flat columns).
LEAD_COLUMNS: Final = ("lead_id", *(f.name for f in INPUT_FIELDS))
# A Parquet struct of the custom features (as the lake and the API's `custom_features` object hold them).
CUSTOM_STRUCT: Final = "custom_features"
_READABLE: Final = frozenset((*LEAD_COLUMNS, CUSTOM_STRUCT))
_CUSTOM_NAMES: Final = frozenset(f.name for f in CUSTOM_FIELDS)
_SHOWN_COLUMNS: Final = 12  # columns named in an error before "and N more"


class ColumnError(LeadscoreError):
    """The input's columns cannot be read as leads (no lead field among them, a bad --column)."""


def parse_column_options(values: Sequence[str]) -> dict[str, str]:
    """`--column 'Input name=field'` options as {input column: lead field} (ValueError says which one is wrong)."""
    renames: dict[str, str] = {}
    for value in values:
        name, sep, target = value.rpartition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target:
            raise ValueError(
                f"--column {value!r}: give it as 'Input column=lead_field', e.g. 'Company Size=company_size'"
            )
        if name in renames and renames[name] != target:
            raise ValueError(f"--column: {name!r} is mapped twice ({renames[name]} and {target})")
        renames[name] = target
    return renames


def _normalized(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_COLUMNS])
    more = len(names) - _SHOWN_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """The input columns a run reads (as lead fields) and ignores, the fields it lacks, and `--column` hints."""

    reads: dict[str, str]  # input column -> the lead column it is read as
    ignored: tuple[str, ...]  # input columns not read
    absent: tuple[str, ...]  # lead_id and core fields no column gives: missing in every row
    absent_custom: int  # custom features no column gives
    hints: tuple[str, ...]  # the renames (`--column` options) of ignored columns whose names read as absent fields
    separator: str = " "  # between hints

    def notes(self) -> list[str]:
        """What a run's summary says of its columns (nothing when the file has every field and nothing else)."""
        lines: list[str] = []
        if self.absent:
            lines.append(f"not in the input, missing in every row: {', '.join(self.absent)}")
        if self.absent_custom:
            lines.append(f"custom features not in the input: {self.absent_custom} of {len(CUSTOM_FIELDS)}")
        if self.ignored:
            lines.append(f"input columns ignored: {_listed(self.ignored)}")
        if self.hints:
            lines.append(f"to read them as fields: {self.separator.join(self.hints)}")
        return lines


@dataclass(frozen=True, slots=True)
class Renaming:
    """How a caller reads a column as a field, for advice: `template` has `{name}` and `{field}`, `separator` joins."""

    template: str
    separator: str

    def advice(self, pairs: Sequence[tuple[str, str]]) -> str:
        """The renames of `pairs` (column, field) as the caller writes them."""
        return self.separator.join(self.template.format(name=name, field=field) for name, field in pairs)


CLI_RENAMING: Final = Renaming("--column '{name}={field}'", " ")


def plan_columns(
    source: str,
    header: Sequence[str],
    renames: Mapping[str, str] | None = None,
    renaming: Renaming = CLI_RENAMING,
) -> ColumnPlan:
    """The plan for an input whose columns are `header` (in file order); ColumnError when it cannot be read.

    `renaming`: how the advice to read a column as a field is written (the command line's `--column` by default).
    """
    renames = dict(renames or {})
    present = set(header)
    for name, target in renames.items():
        option = f"--column '{name}={target}'"
        if name not in present:
            close = difflib.get_close_matches(name, header, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise ColumnError(f"{option}: {source} has no column {name!r}{guess}; its columns: {_listed(header)}")
        if target not in _READABLE:
            close = difflib.get_close_matches(target, sorted(_READABLE), n=1)
            guess = f" (did you mean {close[0]}?)" if close else ""
            raise ColumnError(
                f"{option}: {target!r} is not a lead field{guess}; the fields: lead_id, "
                f"{', '.join(f.name for f in CORE_FIELDS)}, custom_feature_1..{len(CUSTOM_FIELDS)}"
            )
    reads: dict[str, str] = {}
    given_by: dict[str, str] = {}
    ignored: list[str] = []
    for name in header:
        field = renames.get(name, name if name in _READABLE else None)
        if field is None:
            ignored.append(name)
            continue
        if field in given_by:
            raise ColumnError(f"{source}: columns {given_by[field]!r} and {name!r} both give {field}")
        given_by[field] = name
        reads[name] = field
    read = set(reads.values())
    absent = tuple(c for c in ("lead_id", *(f.name for f in CORE_FIELDS)) if c not in read)
    absent_custom = frozenset() if CUSTOM_STRUCT in read else _CUSTOM_NAMES - read
    wanted = absent_custom.union(absent)
    pairs = [(name, field) for name in ignored if (field := _normalized(name)) in wanted]
    hints = tuple(renaming.advice([pair]) for pair in pairs)
    if not read - {"lead_id"}:
        advice = renaming.advice(pairs or [("Its name", "lead_field")])
        raise ColumnError(
            f"no column of {source} is a lead field, so every lead would be scored on nothing. Columns are read by "
            f"the API's field names (company_size, industry, job_title, ..., custom_feature_1..{len(CUSTOM_FIELDS)});"
            f" its columns: {_listed(header)}. Read yours as fields: {advice}"
        )
    return ColumnPlan(reads, tuple(ignored), absent, len(absent_custom), hints, renaming.separator)
