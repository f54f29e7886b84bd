"""The lake's own errors: the API maps them to HTTP answers; storage knows nothing of HTTP."""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error the lake raises to its callers."""


class SpoolFull(LakeError):
    """The spool is at its cap: nothing more is accepted until uploads catch up; retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the spool is full; retry after {retry_after:g} s")
        self.retry_after = retry_after


class SpoolWriteFailed(LakeError):
    """Rows could not be written durably to the spool (ENOSPC, EIO); retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the spool write failed; retry after {retry_after:g} s")
        self.retry_after = retry_after
