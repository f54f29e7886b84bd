"""Handing freed heap back to the system: for the model's and the lake's processes alike (it imports neither)."""

from __future__ import annotations

import ctypes
from contextlib import suppress


def trim_heap() -> None:
    """Return the heap glibc keeps mapped after a burst of short-lived objects (elsewhere: nothing to do).

    Freed memory otherwise stays in the process's RSS for its whole life (README, Memory).
    """
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
