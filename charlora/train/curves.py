"""Per-step curves for `dvc plots show`, written with dvclive (train's loss, evaluate's metrics by checkpoint)."""

from __future__ import annotations

import shutil
from pathlib import Path


def log_curves(rows: list[dict], live_dir: Path) -> None:
    """Write per-step curves with dvclive so `dvc plots show` draws them.

    Each row has a "step" and any metric values; a metric missing from a row is not logged at that step.
    """
    from dvclive import Live

    shutil.rmtree(live_dir, ignore_errors=True)
    with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for row in rows:
            live.step = row["step"]
            for metric, value in row.items():
                if metric != "step":
                    live.log_metric(metric, value)
