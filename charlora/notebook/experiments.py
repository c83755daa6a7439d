"""Experiments from a notebook: `dvc exp show` as a pandas table (the params that differ between runs and the
metrics that decide, like `make exp`), and trying a param with `dvc exp run -S ...`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from charlora.notebook.commands import command_env, dvc, project_root, venv_bin
from charlora.notebook.views import flatten, show_frame

# The metrics `make exp` shows (EXP_QUALITY and EXP_TRAINING in the Makefile), in that order; absent ones are left out.
DECIDING = ("best_score", "identity", "identity_gain", "base_identity", "best_val_loss", "final_loss", "final_val_loss",
            "seconds_per_step", "peak_rss_mb", "estimated_peak_gb")


def experiments_table(root: Path | None = None, all_columns: bool = False) -> Any:
    """`dvc exp show` as a pandas DataFrame: one row per run (the workspace, the commit, each experiment) with the
    deciding metrics and the params that differ between the rows; ``all_columns``: every metric and param."""
    root = root or project_root()
    shown = subprocess.run([str(venv_bin() / "dvc"), "exp", "show", "--json"], cwd=root, env=command_env(),
                           capture_output=True, text=True, check=True).stdout
    return experiments_frame(json.loads(shown), all_columns)


def experiments_frame(shown: list[dict], all_columns: bool = False) -> Any:
    """The rows of `dvc exp show --json` as a DataFrame indexed by experiment name (see :func:`experiments_table`)."""
    import pandas as pd

    rows, params = [], set()
    for commit in shown:
        for revision in [commit, *(r for exp in commit.get("experiments") or [] for r in exp.get("revs", []))]:
            data = revision.get("data") or {}
            rev = revision["rev"] if revision["rev"] == "workspace" else revision["rev"][:7]
            row = {"Experiment": revision.get("name") or rev, "rev": rev, "Created": data.get("timestamp") or ""}
            for kind in ("metrics", "params"):
                for content in (data.get(kind) or {}).values():
                    flat = flatten(content.get("data") or {})
                    row.update(flat)
                    if kind == "params":
                        params.update(flat)
            rows.append(row)
    frame = pd.DataFrame(rows).set_index("Experiment")
    if all_columns:
        return frame
    changed = [c for c in frame.columns if c in params and frame[c].astype(str).nunique() > 1]
    return frame[["rev", "Created"] + [m for m in DECIDING if m in frame.columns and m not in params] + changed]


def show_experiments(root: Path | None = None, all_columns: bool = False) -> None:
    """Show :func:`experiments_table` (``text/html``)."""
    show_frame(experiments_table(root, all_columns))


def try_params(changes: dict[str, Any], run: bool = False, name: str | None = None, root: Path | None = None) -> None:
    """Try param values without editing params.yaml: `dvc exp run -S key=value ...`, streamed, then the table.

    With ``run`` False it only says what it would run and which stages read those params (they and the stages
    after them rerun): a real run trains. A run leaves its params and results in the workspace, as `dvc exp run`
    does from a shell.
    """
    root = root or project_root()
    if not changes:
        print("nothing to try: set TRY = {'train.lora.rank': 8}, for example")
        return
    settings = [arg for key, value in changes.items()
                for arg in ("-S", f"{key}={value if isinstance(value, str) else json.dumps(value)}")]
    command = ["exp", "run", *settings, *(["-n", name] if name else [])]
    if not run:
        readers = reading_stages(root, list(changes))
        print(f"not run: `dvc {' '.join(command)}` reruns {', '.join(readers) or 'no stage'} (the stages that read "
              f"{', '.join(changes)}) and the stages after them. Set RUN_EXPERIMENT = True to run it.")
        return
    dvc(*command, root=root)
    print("the workspace now holds this experiment's params and results; `git checkout params.yaml && dvc repro` "
          "goes back, `dvc exp apply <name>` brings another run's back.")
    show_experiments(root)


def reading_stages(root: Path, keys: list[str]) -> list[str]:
    """The stages of dvc.yaml, in its order, that read one of the params ``keys`` (declared as the key, a section
    above it, or a key below it)."""
    import yaml

    found = []
    for stage, spec in (yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]).items():
        declared = [n for entry in spec.get("params", []) for n in ([entry] if isinstance(entry, str) else
                                                                      [k for keys in entry.values() for k in keys])]
        if any(key == d or key.startswith(f"{d}.") or d.startswith(f"{key}.") for key in keys for d in declared):
            found.append(stage)
    return found
