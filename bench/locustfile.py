"""Sustained load beyond the load-test suites: Locust users scoring realistic batches for as long as asked.

    uv run --group bench locust -f bench/locustfile.py --headless -u 20 -r 5 -t 60s --host http://127.0.0.1:8000

LOADTEST_API_KEY (if set) is sent as X-API-Key. Request ids are `load-test-{num}-{timestamp}`, so the lake marks
every row is_test. On one machine the generator competes with the server for the cores: pin them apart
(`taskset -c 0 leadscore serve ...`, `taskset -c 1 locust ...`) or report the CPU use beside the figures.
"""

from __future__ import annotations

import itertools
import os
import time

from locust import HttpUser, between, task

from leadscore.loadtest.data import synthetic_leads

POOL = synthetic_leads(500, seed=17)
STARTED = int(time.time())
NUMBERS = itertools.count(1)


class ScoringUser(HttpUser):
    """A CRM integration: mostly small batches, some single leads, now and then a large batch."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        """Authenticate every request of this user when a key is given."""
        key = os.environ.get("LOADTEST_API_KEY")
        if key:
            self.client.headers["X-API-Key"] = key

    def _score(self, size: int, name: str) -> None:
        number = next(NUMBERS)
        start = (number * 37) % (len(POOL) - size + 1)  # walk the pool so requests differ
        leads = POOL[start : start + size]
        body = {"request_id": f"load-test-{number}-{STARTED}", "leads": leads}
        with self.client.post("/api/v1/scoring/score", json=body, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif response.json().get("total_leads") != size:
                response.failure("not every lead was scored")

    @task(10)
    def small_batch(self) -> None:
        """Ten leads."""
        self._score(10, "score 10 leads")

    @task(3)
    def single_lead(self) -> None:
        """One lead."""
        self._score(1, "score 1 lead")

    @task(1)
    def large_batch(self) -> None:
        """A hundred leads."""
        self._score(100, "score 100 leads")

    @task(1)
    def readiness(self) -> None:
        """The load balancer's probe."""
        self.client.get("/api/v1/health/ready", name="ready")
