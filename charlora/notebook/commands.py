"""The pipeline's own commands, run from a notebook: ``dvc repro <stage>``, ``dvc exp run``, ``make publish``.

Each runs as a subprocess in the project folder, with the project's venv first on ``PATH`` (as the
Makefile does), so ``dvc`` and the stages' ``python`` are the venv's. Its output (the stages' one
progress display) is printed into the cell line by line as it comes; a failure raises
:class:`CommandFailed` with the exit status, after the output has been shown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

PROJECT_MARKERS = ("dvc.yaml", "params.yaml")


class CommandFailed(RuntimeError):
    """A command run by :func:`stream` exited with a non-zero status (its output is already shown)."""

    def __init__(self, command: Sequence[str], returncode: int) -> None:
        super().__init__(f"`{' '.join(command)}` failed with exit status {returncode}; its output is above.")
        self.command, self.returncode = list(command), returncode


def project_root(start: Path | None = None) -> Path:
    """The project folder: ``start`` (default: the working directory) or the first folder above it that holds
    ``dvc.yaml`` and ``params.yaml`` (a notebook in ``notebooks/`` starts one level below it)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in PROJECT_MARKERS):
            return folder
    raise FileNotFoundError(f"no project folder (with {' and '.join(PROJECT_MARKERS)}) at or above {here}. "
                            "Open the notebook from the project: `make notebook`.")


def venv_bin() -> Path:
    """The folder of this kernel's interpreter (the project's ``.venv/bin`` under `make notebook`), holding dvc."""
    folder = Path(sys.executable).parent  # not resolved: a venv's python is a link to the system one
    if not (folder / "dvc").is_file():
        raise FileNotFoundError(f"dvc is not installed beside this kernel's Python ({sys.executable}). Run `make setup`, "
                                "then open the notebook with `make notebook` (its kernel is the project's .venv).")
    return folder


def command_env() -> dict[str, str]:
    """The environment for the pipeline's commands: this venv first on PATH, unbuffered Python output.

    The kernel's inline matplotlib backend is not passed on: a stage that imports matplotlib draws to files.
    """
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if env.get("MPLBACKEND", "").startswith("module://"):
        del env["MPLBACKEND"]
    return env


def stream(command: Sequence[str], root: Path, write: Callable[[str], None] | None = None, check: bool = True) -> str:
    """Run ``command`` in ``root`` and print its output (stdout and stderr, in order) line by line as it comes.

    Returns the whole output. Interrupting the cell (Jupyter's stop button) passes the interrupt on, as
    Ctrl-C in a shell would (an interrupted training run resumes at the next `dvc repro`), then re-raises.
    """
    write = write or (lambda line: print(line, flush=True))
    lines = []
    process = subprocess.Popen(list(command), cwd=root, env=command_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1, encoding="utf-8", errors="replace")
    try:
        for line in process.stdout:  # text mode: "\r" (a redrawn progress line) also ends a line
            line = line.rstrip("\n")
            lines.append(line)
            write(line)
        returncode = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        process.stdout.close()
    if check and returncode != 0:
        raise CommandFailed(command, returncode)
    return "\n".join(lines)


def stages(root: Path) -> list[str]:
    """The stage names in the project's ``dvc.yaml``, in pipeline order."""
    return list((yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages", {}))


def dvc(*args: str, root: Path | None = None, check: bool = True) -> str:
    """``dvc <args>`` in the project, streamed (see :func:`stream`); returns its output."""
    return stream([str(venv_bin() / "dvc"), *args], root or project_root(), check=check)


def repro(stage: str | None = None, *, force: bool = False, root: Path | None = None) -> None:
    """``dvc repro [stage]``, streamed: the stage and whatever it depends on that changed (nothing, if nothing did).

    A stage this project's ``dvc.yaml`` does not have (one not merged yet) is one line, not an error.
    """
    root = root or project_root()
    if stage is not None and stage not in stages(root):
        print(f"{stage}: this project's dvc.yaml has no '{stage}' stage (stages: {', '.join(stages(root))}); "
              "nothing to run.")
        return
    dvc("repro", *(["--force"] if force else []), *([stage] if stage else []), root=root)


def make(target: str, root: Path | None = None) -> str:
    """``make <target>`` in the project with this kernel's venv (``VENV=...``), streamed."""
    return stream(["make", target, f"VENV={Path(sys.prefix)}"], root or project_root())
