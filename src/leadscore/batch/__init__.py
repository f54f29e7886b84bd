"""Batch rescoring of whole files (a CRM export): `score_file`, behind the `leadscore score` command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leadscore.batch.options import FileFormat

if TYPE_CHECKING:
    from leadscore.batch.run import Summary, score_file

__all__ = ["FileFormat", "Summary", "score_file"]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the attribute asked for
    # Lazy: importing the package (the CLI does) must not load Arrow and the model stack.
    if name in ("Summary", "score_file"):
        from leadscore.batch import run  # noqa: PLC0415

        return getattr(run, name)
    raise AttributeError(name)
