"""While training runs: mlx's memory limit from the plan, the measured peaks, and a fail-fast check.

mlx's ``set_memory_limit`` is a guideline, not a hard cap (mlx waits for scheduled work and frees its
cache before going over it; past it, allocations still succeed while the system has memory, swap
included). So :class:`MemoryGuard` sets it to what the machine can give training and, after the
warm-up and after every step, compares mlx's measured peak with that: a run that goes over stops at
once with the figures (its checkpoints so far are kept), instead of swapping the whole machine. With
``train.force`` the check only reports. Measured peaks: ``mx.get_peak_memory()`` (mlx's arrays; on a
Linux CPU it counts CPU allocations too) and the process's peak resident set (``ru_maxrss``).
"""

from __future__ import annotations

import resource
import sys

from charlora.errors import PipelineError
from charlora.machine import GB
from charlora.train.preflight import MemoryPlan


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class MemoryGuard:
    """Sets mlx's limit for a run and checks its measured peaks against the plan's budget."""

    def __init__(self, plan: MemoryPlan, force: bool) -> None:
        self.plan, self.force = plan, force
        self.warmup_peak: int | None = None
        self.steps_peak = 0
        self.warned = False

    def start(self) -> None:
        """Before loading: reset mlx's peak and set its memory limit to the budget (where there is one)."""
        import mlx.core as mx

        mx.reset_peak_memory()
        if self.plan.budget_bytes is not None:
            mx.set_memory_limit(self.plan.budget_bytes)

    def warmup_done(self) -> None:
        """The warm-up's peak (loading, encoding) is recorded apart; the steps' peak is measured from here."""
        import mlx.core as mx

        self.warmup_peak = mx.get_peak_memory()
        self._check(self.warmup_peak, "the warm-up")
        mx.reset_peak_memory()

    def check(self) -> None:
        """After a step: stop (or, with train.force, warn once) if mlx's peak went over the budget."""
        import mlx.core as mx

        self.steps_peak = max(self.steps_peak, mx.get_peak_memory())
        self._check(self.steps_peak, "a training step")

    def _check(self, peak: int, when: str) -> None:
        budget = self.plan.budget_bytes
        if budget is None or peak <= budget:
            return
        message = (f"{when} used {peak / GB:.1f} GB of mlx memory, more than the {budget / GB:.1f} GB this machine "
                   f"can give training (estimate: {self.plan.estimate.total_bytes / GB:.1f} GB, memory preset "
                   f"{self.plan.preset}).")
        if not self.force:
            raise PipelineError(f"{message} Stopped before the system starts swapping; checkpoints so far are kept. "
                                "Choose a smaller train.preset (or lower train.resolution / batch_size), "
                                "or set train.force: true to go on anyway.")
        if not self.warned:
            self.warned = True
            from charlora.progress import say

            say("train", f"warning: {message} train.force is set: going on.")

    def measured(self) -> dict:
        """The measured peaks for metrics/train.json (MB)."""
        import mlx.core as mx

        steps = max(self.steps_peak, mx.get_peak_memory())
        warmup = self.warmup_peak or 0
        return {"peak_mlx_mb": round(max(warmup, steps) / (1 << 20), 1), "warmup_peak_mlx_mb": round(warmup / (1 << 20), 1),
                "steps_peak_mlx_mb": round(steps / (1 << 20), 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
