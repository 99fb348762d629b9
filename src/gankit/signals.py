"""Stop signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP are handled alike.

``docker stop``, Kubernetes, SLURM preemption and a closed terminal send SIGTERM or
SIGHUP; Ctrl-C sends SIGINT. While :meth:`gankit.Trainer.fit` runs, the first of these
signals asks training to stop after the current step: the logs, a sample grid and
``checkpoints/last.pt`` are written, then :class:`Interrupted` is raised. A second signal
raises :class:`Interrupted` at once. ``gankit`` exits with the conventional status
``128 + signal number`` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).

Outside training, :func:`exit_on_signals` (used by the command line) turns the same
signals into :class:`Interrupted` at once, so that even an interrupt while Python is still
importing ends with one line instead of a traceback. This module needs only the standard library, so
the command line installs its handlers before torch is imported.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "signal_name",
    "install_stop_handlers",
    "restore_handlers",
    "exit_on_signals",
]

#: The signals that stop training: SIGINT, SIGTERM and (where it exists) SIGHUP.
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15, and so on.

    Args:
        signum: a signal number.

    Returns:
        Its name, or ``"signal N"`` for an unknown number.

    Example:
        >>> signal_name(2)
        'SIGINT'
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """Training (or the command) was stopped by a signal.

    A subclass of :class:`KeyboardInterrupt`, so code that handles Ctrl-C handles
    SIGTERM and SIGHUP too.

    Args:
        signum: the signal number.
        message: what happened (e.g. where the checkpoint was saved).

    Attributes:
        signum: the signal number.
        exit_code: the conventional exit status, ``128 + signum``.

    Example:
        >>> Interrupted(15, "stopped").exit_code
        143
    """

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """``128 + signum``: what a shell reports for a process ended by that signal."""
        return 128 + self.signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handled_signals() -> list[int]:
    """The stop signals that are not ignored: ``nohup`` (SIGHUP) and a shell's background
    jobs (SIGINT) ignore some, and an ignored signal stays ignored."""
    return [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]


def restore_handlers(previous: dict[int, Any] | None) -> None:
    """Put back the handlers :func:`install_stop_handlers` or :func:`exit_on_signals` replaced.

    Args:
        previous: ``{signal: handler}`` as returned by :func:`install_stop_handlers`; None
            does nothing.
    """
    if not previous or not _in_main_thread():
        return
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _raise_at_once(signum: int, frame: Any) -> None:
    raise Interrupted(signum, f"interrupted by {signal_name(signum)}")


def install_stop_handlers(request_stop: Callable[[int], None]) -> dict[int, Any] | None:
    """Make the first stop signal call ``request_stop(signum)``, and a second raise at once.

    Only the main thread can install signal handlers; elsewhere nothing is installed.
    Signals that are ignored (``nohup`` ignores SIGHUP) stay ignored.

    Args:
        request_stop: called with the signal number of the first signal; it should make
            the training loop stop at the end of the current step.

    Returns:
        The previous handlers (for :func:`restore_handlers`), or None when nothing was
        installed.
    """
    if not _in_main_thread():
        return None
    previous: dict[int, Any] = {}

    def first(signum: int, frame: Any) -> None:
        for s in previous:  # the next signal, of any kind, stops at once
            signal.signal(s, _second)
        request_stop(signum)

    def _second(signum: int, frame: Any) -> None:
        raise Interrupted(signum, f"interrupted again by {signal_name(signum)}: stopped at once, "
                                  "without saving")

    for s in _handled_signals():
        previous[s] = signal.signal(s, first)
    return previous


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` at once.

    The previous handlers are restored afterwards. Ignored signals stay ignored. Outside
    the main thread it does nothing.

    Yields:
        Nothing.
    """
    previous: dict[int, Any] = {}
    if _in_main_thread():
        for s in _handled_signals():
            previous[s] = signal.signal(s, _raise_at_once)
    try:
        yield
    finally:
        restore_handlers(previous)
