"""Derive a job function and level from a free-text job title ("VP Marketing" -> marketing, vp)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from leadscore.features.spec import JOB_FUNCTIONS, JOB_LEVELS

_WORD = re.compile(r"[a-z0-9&]+")
# "Vice President", "Vice-President", "Vice  President": one word, so "president" does not read as C-level.
_VICE_PRESIDENT = re.compile(r"vice[\s-]*president")

# Checked in order; the first level whose keywords appear wins, so "Senior Vice President" is vp.
_LEVEL_KEYWORDS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    (
        "c-level",
        frozenset(
            {"chief", "ceo", "cmo", "cto", "cfo", "coo", "cio", "cro", "cpo", "ciso", "founder", "president", "owner"}
        ),
    ),
    ("vp", frozenset({"vp", "svp", "evp", "avp", "vice"})),
    ("director", frozenset({"director", "head"})),
    ("manager", frozenset({"manager", "lead", "supervisor", "mgr"})),
    ("senior", frozenset({"senior", "sr", "principal", "staff"})),
)

_FUNCTION_KEYWORDS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    (
        "marketing",
        frozenset({"marketing", "cmo", "growth", "brand", "demand", "content", "seo", "communications"}),
    ),
    ("sales", frozenset({"sales", "account", "cro", "revenue", "business", "bdr", "sdr", "partnerships"})),
    ("product", frozenset({"product", "cpo", "ux", "design"})),
    (
        "engineering",
        frozenset({"engineering", "engineer", "developer", "software", "cto", "architect", "devops", "technology"}),
    ),
    ("it", frozenset({"it", "cio", "ciso", "security", "infrastructure", "systems", "network", "data", "information"})),
    ("finance", frozenset({"finance", "financial", "cfo", "controller", "accounting", "procurement"})),
    ("operations", frozenset({"operations", "operating", "ops", "coo", "supply", "logistics"})),
    ("hr", frozenset({"hr", "people", "talent", "recruiting", "human"})),
    ("executive", frozenset({"ceo", "executive", "founder", "president", "owner", "general", "gm", "managing"})),
)

FUNCTION_INDEX: Final = {name: i for i, name in enumerate(JOB_FUNCTIONS)}
LEVEL_ORDINAL: Final = {name: i + 1 for i, name in enumerate(JOB_LEVELS)}


@lru_cache(maxsize=65536)
def parse_job_title(title: str) -> tuple[str, str]:
    """Return (function, level) for a title; unmatched parts are "other" and "individual".

    Cached because CRMs send the same few thousand titles over and over.
    """
    words = frozenset(_WORD.findall(_VICE_PRESIDENT.sub("vice", title.casefold())))
    level = next((name for name, keys in _LEVEL_KEYWORDS if words & keys), "individual")
    function = next((name for name, keys in _FUNCTION_KEYWORDS if words & keys), "other")
    return function, level
