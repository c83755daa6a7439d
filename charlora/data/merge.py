"""merge: image + caption pairs in the folder layout mflux-train reads, plus a held-out split."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from charlora.errors import PipelineError
from charlora.fileio import read_json
from charlora.params import MergeParams


def heldout_names(names: list[str], fraction: float, seed: int) -> list[str]:
    """Deterministic held-out pick: ``round(fraction * n)`` names, at least 1 when ``fraction > 0``.

    At least one image always stays in training.
    """
    if fraction <= 0 or len(names) < 2:
        return []
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    return sorted(random.Random(seed).sample(sorted(names), count))


def preview_prompts(params: MergeParams, trigger: str) -> list[str]:
    """merge.preview_prompts with the trigger word put in."""
    return [prompt.replace("{trigger}", trigger) for prompt in params.preview_prompts]


def merge(processed_dir: Path, captions_dir: Path, prior_dir: Path, train_dir: Path, heldout_dir: Path,
          params: MergeParams, trigger: str) -> dict:
    """Copy pairs into ``train_dir`` (with ``preview_N.txt``) and ``heldout_dir``; return a summary.

    The prior pictures (``prior_dir``, prior stage) of the training pictures go into ``train_dir`` too;
    those of held-out pictures stay out, so nothing about a held-out picture reaches training.
    """
    names = [entry["name"] for entry in read_json(processed_dir / "manifest.json")]
    for name in names:
        if not (captions_dir / f"{name}.txt").read_text(encoding="utf-8").strip():
            raise PipelineError(f"{captions_dir / f'{name}.txt'} is empty. Run the caption stage again (dvc repro -f caption).")
    heldout = set(heldout_names(names, params.heldout_fraction, params.seed))
    priors = 0
    for name in names:
        target = heldout_dir if name in heldout else train_dir
        shutil.copyfile(processed_dir / f"{name}.png", target / f"{name}.png")
        shutil.copyfile(captions_dir / f"{name}.txt", target / f"{name}.txt")
        if name in heldout:
            continue
        for picture in sorted(prior_dir.glob(f"{name}_prior*.png")):
            shutil.copyfile(picture, train_dir / picture.name)
            shutil.copyfile(picture.with_suffix(".txt"), train_dir / f"{picture.stem}.txt")
            priors += 1
    for index, prompt in enumerate(preview_prompts(params, trigger), 1):
        (train_dir / f"preview_{index}.txt").write_text(prompt + "\n", encoding="utf-8")
    return {"train_images": len(names) - len(heldout), "heldout_images": len(heldout), "prior_images": priors,
            "heldout": sorted(heldout)}
