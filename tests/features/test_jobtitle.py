"""Job-title parsing: free text in, (function, level) out."""

from __future__ import annotations

import pytest

from leadscore.features.jobtitle import FUNCTION_INDEX, LEVEL_ORDINAL, parse_job_title
from leadscore.features.spec import JOB_FUNCTIONS, JOB_LEVELS


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("VP Marketing", ("marketing", "vp")),
        ("Chief Marketing Officer", ("marketing", "c-level")),
        ("Sr. Software Engineer", ("engineering", "senior")),
        ("Head of Sales", ("sales", "director")),
        ("Director of IT", ("it", "director")),
        ("Senior Vice President of Sales", ("sales", "vp")),
        ("Vice-President, Finance", ("finance", "vp")),
        ("Chief Technology Officer", ("engineering", "c-level")),
        ("Chief Executive Officer", ("executive", "c-level")),
        ("Chief Operating Officer", ("operations", "c-level")),
        ("Chief Information Officer", ("it", "c-level")),
        ("CEO & Founder", ("executive", "c-level")),
        ("Account Executive", ("sales", "individual")),
        ("Product Manager", ("product", "manager")),
        ("Talent Acquisition Specialist", ("hr", "individual")),
        ("  vp   MARKETING ", ("marketing", "vp")),
    ],
)
def test_known_titles(title, expected):
    """A title yields the function and level a recruiter would read from it."""
    assert parse_job_title(title) == expected


@pytest.mark.parametrize("title", ["Barista", "", "???", "Astronaut"])
def test_unknown_titles_are_other_individual(title):
    """A title with no known words is function "other" at level "individual"."""
    assert parse_job_title(title) == ("other", "individual")


def test_every_parse_result_has_a_model_code():
    """Functions and levels the parser can return all have a code and an ordinal in the spec."""
    assert set(FUNCTION_INDEX) == set(JOB_FUNCTIONS)
    assert sorted(LEVEL_ORDINAL.values()) == list(range(1, len(JOB_LEVELS) + 1))
    assert LEVEL_ORDINAL["individual"] < LEVEL_ORDINAL["senior"] < LEVEL_ORDINAL["vp"] < LEVEL_ORDINAL["c-level"]
