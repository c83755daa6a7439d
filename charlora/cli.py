"""Entry-point helpers for the stage scripts under ``stages/`` (library code never imports this)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from charlora.errors import PipelineError
from charlora.progress import say


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
    """Print a line for ``stage`` (stdout, flushed so `dvc repro` shows it at once)."""
    say(stage, message)


def reporter(stage: str) -> Callable[[str], None]:
    """A ``report(message)`` callable for library code, printing as ``stage``."""
    return lambda message: say(stage, message)
