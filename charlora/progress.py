"""The one progress display of a long stage, and nothing else's.

:class:`Progress` prints ``<stage>: <label> i/n  <detail>  1.23 s/<unit>  ETA 45 s`` lines. Rates
and ETAs come from measured items only: time spent before the first item or between items on
something else (loading a model, mflux encoding the training images) is a *warm-up*, reported on
its own line with its own duration and never folded into the rate.

:func:`silenced` hides what mflux and other libraries print on their own (tqdm bars, banners such
as "Loading 1 LoRA file(s)... Applied to 14 layers" once per model) for the duration of a call
into them. Their stderr stays visible, and captured lines that report a problem are passed on.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

# Streams that silenced() replaced, outermost first: progress lines go to the one the user sees.
_VISIBLE: list[TextIO] = []
# Captured library lines that say something went wrong are passed on to stderr.
_PROBLEM_MARKS = ("❌", "⚠", "error", "Error", "warning", "Warning", "unmatched", "Skipped")


def visible_stdout() -> TextIO:
    """The stdout the user sees, even inside :func:`silenced`."""
    return _VISIBLE[0] if _VISIBLE else sys.stdout


def say(stage: str, message: str) -> None:
    """One line ``<stage>: <message>`` on the visible stdout, flushed (so `dvc repro` shows it at once)."""
    stream = visible_stdout()
    stream.write(f"{stage}: {message}\n")
    stream.flush()


def duration(seconds: float) -> str:
    """A short human duration: ``0.4 s``, ``45 s``, ``3 min 05 s``, ``2 h 10 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Progress over ``total`` items of one kind (``label``: step, image, checkpoint, ...).

    Call :meth:`advance` after each item. An item's time runs from the previous item's end (or
    :meth:`start`) to its own, minus any :meth:`warmup` inside it. A line is printed for the first
    and the last item and at most every ``min_interval`` seconds in between.
    """

    def __init__(self, stage: str, total: int, label: str = "item", unit: str | None = None, *, done: int = 0,
                 clock: Callable[[], float] = time.perf_counter, min_interval: float = 1.0,
                 window: int = 10) -> None:
        self.stage, self.total, self.label, self.unit = stage, total, label, unit or label
        self.clock, self.min_interval, self.window = clock, min_interval, window
        self.done = done  # items done before this run (a resumed training run): counted, not timed
        self.first = done
        self.durations: list[float] = []
        self._mark = clock()
        self._last_line = float("-inf")

    def say(self, message: str) -> None:
        """A plain line for this stage."""
        say(self.stage, message)

    def start(self) -> None:
        """Start timing items now: whatever happened before is not an item's time."""
        self._mark = self.clock()

    @contextlib.contextmanager
    def warmup(self, what: str) -> Iterator[None]:
        """Report ``what`` and its duration apart; the time is left out of every rate."""
        self.say(f"{what} ...")
        began = self.clock()
        try:
            yield
        finally:
            spent = self.clock() - began
            self._mark += spent
            self.say(f"{what}: {duration(spent)}")

    def advance(self, detail: str = "", seconds: float | None = None) -> float:
        """One item done; returns its duration in seconds (``seconds`` when the caller timed it itself)."""
        now = self.clock()
        spent = max(0.0, now - self._mark) if seconds is None else seconds
        self._mark = now
        self.done += 1
        self.durations.append(spent)
        if self.done in (self.first + 1, self.total) or now - self._last_line >= self.min_interval:
            self._last_line = now
            self.say(self.line(detail))
        return spent

    def rate(self) -> float:
        """Seconds per item over the last ``window`` measured items (0 before the first)."""
        recent = self.durations[-self.window:]
        return sum(recent) / len(recent) if recent else 0.0

    def line(self, detail: str = "") -> str:
        """``<label> i/n  <detail>  <rate> s/<unit>  ETA <time>`` from the measured items."""
        parts = [f"{self.label} {self.done}/{self.total}"]
        if detail:
            parts.append(detail)
        rate = self.rate()
        parts.append(f"{rate:.2f} s/{self.unit}")
        if self.done < self.total:
            parts.append(f"ETA {duration(rate * (self.total - self.done))}")
        return "  ".join(parts)

    def seconds_per_item(self, skip_first: bool = False) -> float:
        """Mean measured seconds per item (``skip_first``: without the first, when there are others)."""
        times = self.durations[1:] if skip_first and len(self.durations) > 1 else self.durations
        return sum(times) / len(times) if times else 0.0


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Hide other libraries' own progress for the block: tqdm bars off, their stdout captured.

    stderr is left alone (errors stay visible), and a captured stdout line that looks like a
    problem (mflux prints "❌ ..." and unmatched LoRA keys on stdout) is written to stderr after the
    block. :class:`Progress` and :func:`say` keep printing to the real stdout meanwhile.
    """
    import tqdm.std

    original = tqdm.std.tqdm.__dict__["__init__"]

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        original.__get__(self, type(self))(*args, **kwargs)

    captured = io.StringIO()
    _VISIBLE.append(sys.stdout)
    tqdm.std.tqdm.__init__ = quiet_init
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        tqdm.std.tqdm.__init__ = original
        _VISIBLE.pop()
        problems = [line for line in captured.getvalue().splitlines() if any(m in line for m in _PROBLEM_MARKS)]
        if problems:
            sys.stderr.write("".join(line + "\n" for line in problems))
            sys.stderr.flush()
