"""Waiting on a condition with a deadline (tests never sleep a fixed time and hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns a truthy value (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {what or condition}")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T], within: float = 30.0, interval: float = 0.01, what: str = ""
) -> T:
    """`wait_until` on an event loop: polls `condition` between turns of the loop, so its tasks keep running."""
    try:
        async with asyncio.timeout(within):
            while not (value := condition()):  # noqa: ASYNC110 - polls a plain value (lines, calls), no event to wait on
                await asyncio.sleep(interval)
            return value
    except TimeoutError:
        raise AssertionError(f"not true within {within} s: {what or condition}") from None


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a hung store, for fault tests."""

    def __init__(self) -> None:
        import socket  # noqa: PLC0415
        import threading  # noqa: PLC0415

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port = int(self._socket.getsockname()[1])
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """Its URL."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        """Stop accepting and drop every held connection."""
        self._closed.set()
        self._socket.close()
        for connection in self._held:
            connection.close()
