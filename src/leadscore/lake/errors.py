"""The lake's own errors: the API maps them to HTTP answers; the lake knows nothing of HTTP."""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error the lake raises to its callers."""

    def __init__(self, message: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip().splitlines()[0])
        self.retry_after = retry_after


class SpoolFull(LakeError):
    """The spool holds as much as it may: nothing more is acknowledged until the table catches up."""


class SpoolWriteFailed(LakeError):
    """Rows could not be written to the spool (a full disk, an I/O error): they were not acknowledged."""
