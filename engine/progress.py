"""Structured progress events.

Library code never prints. Long work emits :class:`ProgressEvent` objects to a
callback; the CLI renders them as a progress bar (tqdm) and the Excel ribbon shows
them in the status bar. ``None`` as callback means "nobody is listening".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["ProgressEvent", "ProgressCallback", "emit", "Stage"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` names the step (e.g. ``"backtest"``); ``done``/``total`` count units of work."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)


ProgressCallback = Optional[Callable[[ProgressEvent], None]]


def emit(callback: ProgressCallback, stage: str, done: int, total: int, message: str = "") -> None:
    """Send one event to ``callback`` (if any) and to the debug log."""
    event = ProgressEvent(stage, done, total, message)
    _log.debug("progress %s %d/%d %s", stage, done, total, message)
    if callback is not None:
        callback(event)


class Stage:
    """Context helper: ``with Stage(cb, "fit", total=3) as st: st.step("lags")``."""

    def __init__(self, callback: ProgressCallback, stage: str, total: int) -> None:
        self.callback, self.stage, self.total, self.done = callback, stage, total, 0

    def __enter__(self) -> "Stage":
        emit(self.callback, self.stage, 0, self.total, "start")
        return self

    def step(self, message: str = "", n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        emit(self.callback, self.stage, self.done, self.total, message)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.done < self.total:
            emit(self.callback, self.stage, self.total, self.total, "done")
