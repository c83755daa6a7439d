"""The evaluation prompts (``validation/test_prompts.json``), with and without the trigger word."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from charlora.errors import PipelineError


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt: its id, its text with the trigger word, and the same text without it."""

    id: str
    text: str  # with the trigger word
    without_trigger: str


def load_prompts(path: Path, trigger: str, max_prompts: int | None) -> list[EvalPrompt]:
    """The first ``max_prompts`` prompts (None: all) of a prompts file; each must contain ``{trigger}``."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path} is not a prompts file ({error}); it needs {{\"prompts\": [{{\"id\", \"prompt\"}}]}}.")
    prompts = []
    for row in rows if max_prompts is None else rows[:max_prompts]:
        if "{trigger}" not in row["prompt"]:
            raise PipelineError(f"{path}: prompt '{row['id']}' has no {{trigger}}; every evaluation prompt names the character.")
        without = row["prompt"].replace("{trigger},", "").replace("{trigger}", "").strip(" ,")
        prompts.append(EvalPrompt(row["id"], row["prompt"].replace("{trigger}", trigger), without))
    return prompts
