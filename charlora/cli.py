"""Entry-point wrapper shared by the stage scripts."""

from __future__ import annotations

import sys
from collections.abc import Callable

from charlora.errors import PipelineError


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``; turn user errors into a clear message and a non-zero exit."""
    try:
        main()
    except PipelineError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted. Nothing was half-written; run `dvc repro` again to continue.", file=sys.stderr)
        sys.exit(130)


def log(stage: str, message: str) -> None:
    """Print a progress line for ``stage`` (stdout, flushed so `dvc repro` shows it at once)."""
    print(f"{stage}: {message}", flush=True)
