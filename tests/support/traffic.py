"""Bounded scoring traffic against a real server, remembering what it acknowledged (for lake fault tests)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.support.leads import synthetic_leads

_LEADS = synthetic_leads(20, seed=3)


@dataclass
class Traffic:
    """A background loop posting small batches until stopped or `max_requests` is reached."""

    url: str
    leads_per_request: int = 3
    concurrency: int = 4
    max_requests: int = 5000
    max_seconds: float = 120.0
    pause: float = 0.0  # seconds each sender waits between requests (spreads load over an outage)
    acknowledged: dict[str, int] = field(default_factory=dict)  # request_id -> leads, for every 2xx
    # request_id -> leads, for requests that got no answer at all (the server died mid-request): their rows may or
    # may not have been kept, as the client cannot know.
    unanswered: dict[str, int] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sent: int = 0

    def start(self) -> Traffic:
        """Start the sender threads."""
        for _ in range(self.concurrency):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop sending and wait for requests in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def finish(self) -> None:
        """Wait until all `max_requests` were sent (or `max_seconds` passed)."""
        for thread in self._threads:
            thread.join(timeout=self.max_seconds + 30)

    def wait_for(self, acknowledged: int, timeout: float = 30.0) -> None:
        """Block until at least `acknowledged` requests got a 2xx."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def acknowledged_leads(self) -> int:
        """Leads in all 2xx answers."""
        return sum(self.acknowledged.values())

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._sent >= self.max_requests:
                        return
                    self._sent += 1
                request_id = f"fault-{uuid.uuid4().hex[:16]}"
                leads = _LEADS[: self.leads_per_request]
                try:
                    response = client.post("/api/v1/scoring/score", json={"request_id": request_id, "leads": leads})
                except httpx.TransportError as exc:
                    with self._lock:
                        self.statuses[type(exc).__name__] += 1
                        if not isinstance(exc, httpx.ConnectError):  # a refused connection sent nothing
                            self.unanswered[request_id] = len(leads)
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.statuses[str(response.status_code)] += 1
                    if 200 <= response.status_code < 300:
                        self.acknowledged[request_id] = len(leads)
                if response.status_code == 503:
                    time.sleep(0.05)
                if self.pause:
                    time.sleep(self.pause)
