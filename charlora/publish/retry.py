"""Bounded retries with exponential backoff for network calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``tries`` attempts in all; waits ``backoff_s``, then twice that, ... between them."""

    tries: int
    backoff_s: float

    def run(self, call: Callable[[], T], *, what: str, transient: Callable[[BaseException], bool],
            report: Callable[[str], None], redact: Callable[[str], str] = str) -> T:
        """Call ``call`` until it succeeds, a non-transient error is raised, or the tries run out."""
        for attempt in range(1, self.tries + 1):
            try:
                return call()
            except Exception as error:  # noqa: BLE001 (``transient`` decides; anything else is re-raised)
                if attempt == self.tries or not transient(error):
                    raise
                wait = self.backoff_s * 2 ** (attempt - 1)
                report(f"{what} failed ({redact(describe(error))}); try {attempt + 1} of {self.tries} in {wait:.1f} s")
                time.sleep(wait)
        raise AssertionError("unreachable")


def describe(error: BaseException) -> str:
    """One line: the error's type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
