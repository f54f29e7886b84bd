"""The application state that lifespan yields, and the small dependencies routes read it through."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, TypedDict

from fastapi import Depends, Request

from leadscore.api.security import KeyRing
from leadscore.config import Settings
from leadscore.lake.sink import LakeSink
from leadscore.model.bundle import Scorer
from leadscore.scoring import PredictionBatcher


@dataclass
class Lifecycle:
    """Process-level facts readiness and health report."""

    started_at: float = field(default_factory=time.monotonic)
    draining_since: float | None = None  # monotonic time shutdown began

    @property
    def draining(self) -> bool:
        """True from the moment shutdown begins (SIGTERM): readiness answers 503 from then on."""
        return self.draining_since is not None

    def start_draining(self) -> None:
        """Mark the start of shutdown (idempotent: the first call's time counts)."""
        if self.draining_since is None:
            self.draining_since = time.monotonic()

    def remaining_grace(self, grace: float) -> float:
        """Seconds of the shutdown grace not yet used."""
        used = 0.0 if self.draining_since is None else time.monotonic() - self.draining_since
        return max(1.0, grace - used)


class State(TypedDict):
    """What lifespan yields; Starlette hands a copy to every request as `request.state`."""

    settings: Settings
    scorer: Scorer
    lifecycle: Lifecycle
    lake: LakeSink | None
    outcomes: LakeSink | None  # the outcomes' sink: open when the lake is
    batcher: PredictionBatcher
    keyring: KeyRing


async def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def _scorer(request: Request) -> Scorer:
    scorer: Scorer = request.state.scorer
    return scorer


async def _lifecycle(request: Request) -> Lifecycle:
    lifecycle: Lifecycle = request.state.lifecycle
    return lifecycle


async def _lake(request: Request) -> LakeSink | None:
    lake: LakeSink | None = request.state.lake
    return lake


SettingsDep = Annotated[Settings, Depends(_settings)]
ScorerDep = Annotated[Scorer, Depends(_scorer)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]


async def _outcomes(request: Request) -> LakeSink | None:
    outcomes: LakeSink | None = request.state.outcomes
    return outcomes


LakeDep = Annotated[LakeSink | None, Depends(_lake)]
OutcomesSinkDep = Annotated[LakeSink | None, Depends(_outcomes)]
