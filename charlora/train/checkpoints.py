"""mflux's checkpoint zips in the training folder, and the plan of a run: resume or start fresh.

The training folder (``models/training``) persists between runs. When the last run was
interrupted and neither params nor data changed (same fingerprint), the next run resumes from the
newest complete checkpoint; otherwise it starts fresh and says why. extract reads the same zips.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charlora.fileio import read_json

RUN_SUBDIR = "run"  # mflux's checkpoint.output_path inside the training folder


def checkpoint_step(path: Path) -> int:
    """The step of a ``NNNNNNN_checkpoint.zip``."""
    return int(path.name.split("_", 1)[0])


def good_checkpoints(run_dir: Path, report: Callable[[str], None] = print) -> list[Path]:
    """Complete checkpoint zips, oldest first. A zip cut short by a kill is removed (and ``report``-ed)."""
    found = []
    for path in sorted((run_dir / "checkpoints").glob("*_checkpoint.zip")):
        try:
            with zipfile.ZipFile(path) as archive:
                ok = "checkpoint.json" in archive.namelist() and archive.testzip() is None
        except (zipfile.BadZipFile, OSError):
            ok = False
        if ok:
            found.append(path)
        else:
            report(f"removing incomplete checkpoint {path} (the run was stopped while writing it)")
            path.unlink()
    return found


@dataclass(frozen=True)
class RunPlan:
    """Where a training run starts: ``resume_from`` a checkpoint, or None (fresh), and why."""

    resume_from: Path | None
    reason: str


def plan_run(training_dir: Path, fingerprint: str, total_steps: int, report: Callable[[str], None] = print) -> RunPlan:
    """Resume from the newest good checkpoint if the last run had this fingerprint and did not finish.

    A finished run that is run again (``dvc repro -f``, or its outputs were edited) starts fresh.
    """
    run_dir = training_dir / RUN_SUBDIR
    previous = training_dir / "fingerprint.json"
    if not run_dir.exists():
        return RunPlan(None, "no earlier run: starting fresh")
    if not previous.exists() or read_json(previous).get("fingerprint") != fingerprint:
        return RunPlan(None, "params or training data changed since the last run: starting fresh")
    checkpoints = good_checkpoints(run_dir, report)
    if not checkpoints:
        return RunPlan(None, "the last run left no checkpoint: starting fresh")
    if checkpoint_step(checkpoints[-1]) >= total_steps:
        return RunPlan(None, "the last run with these params and data had finished: training again from the start")
    return RunPlan(checkpoints[-1], f"same params and data as the interrupted run: resuming from {checkpoints[-1].name} "
                                    f"(step {checkpoint_step(checkpoints[-1])})")
