"""leadscore: scores B2B leads 1-5 with XGBoost and records every prediction in a data lake."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadscore.columnar import score_table

__all__ = ["score_table"]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - a module attribute of any kind
    """`score_table` is imported on first use: the CLI and the server must not pay for pyarrow compute at import."""
    if name == "score_table":
        from leadscore.columnar import score_table  # noqa: PLC0415 - lazy on purpose

        return score_table
    raise AttributeError(f"module 'leadscore' has no attribute {name!r}")
