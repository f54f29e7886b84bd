"""Process-level settings of the project's own processes: pandas left out, garbage collection, SIGTERM."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import FrameType, ModuleType

from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.runtime")

_PANDAS = "pandas"


class _WithoutPandas(MetaPathFinder):
    """Fails every import of pandas (and its modules) with a message that says why."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,  # noqa: ARG002 - the finder protocol's signature
        target: ModuleType | None = None,  # noqa: ARG002
    ) -> ModuleSpec | None:
        if fullname == _PANDAS or fullname.startswith(f"{_PANDAS}."):
            message = f"{fullname} is left out of this leadscore process (leadscore.runtime.leave_out_pandas)"
            raise ModuleNotFoundError(message, name=fullname)
        return None


def leave_out_pandas() -> None:
    """Make `import pandas` fail in this process, unless something imported it already: call it first thing.

    For the project's own processes only (the `leadscore` command, the server's workers, the lake's committer),
    never on import of a module a user's code may import. Nothing in them uses pandas, and the runtime
    dependencies do not include it (the container has none). But pyarrow imports it, when it is installed (the
    development environment and many analysts' have it), on its first conversion of a Python or NumPy object:
    measured here, 0.3-0.5 s of every `leadscore score` and about 38 MB of its RSS (bench/README.md, sixth
    round). pyarrow treats the failed import as pandas being absent, as in the container; the C++ conversion of
    untyped Python lists retries the import on every call, hence a refusal that stays.
    """
    if _PANDAS in sys.modules or any(isinstance(finder, _WithoutPandas) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _WithoutPandas())


def collect_nothing_at_exit() -> None:
    """Let the interpreter exit without collecting what this process loaded: call it as a command returns.

    The final garbage collections of an interpreter's shutdown traverse every object still alive: for the
    `leadscore` command that is the whole model stack (pydantic, pyarrow, the model), 0.29 s of one core after a
    `leadscore score` has written its output, about a fifth of the run for a small file (bench/README.md, seventh
    round). Frozen objects are left out of them; the operating system frees the memory. Files, atexit handlers
    and the standard streams are closed and flushed as before: only the collection of cycles is skipped.
    """
    gc.freeze()


def tune_gc() -> None:
    """Make garbage collection cheap for a long-running server, once everything long-lived is loaded.

    Everything loaded so far (model, libraries) lives as long as the process: freezing moves it out of the
    collector's view, so full collections under load scan only request garbage; the young generation is
    collected every 50,000 allocations instead of 700. The 1-lead p99 at 32 connections was dominated by full
    collections before this (figures in bench/README.md).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def on_sigterm(start_draining: Callable[[], None]) -> Callable[[], None]:
    """Call `start_draining` the moment SIGTERM arrives, then let the server's own handler shut down.

    Returns a function that puts the previous handler back. Only the main thread can handle signals
    (in-process test clients run the app elsewhere: nothing to do there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        start_draining()
        log.info("sigterm_received_draining")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
