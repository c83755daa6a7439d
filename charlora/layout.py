"""Where each stage reads and writes (the same paths as in dvc.yaml), relative to the project root,
and the rule that keeps every read inside the project: nothing outside the project's folders is
ever read through a symlink or a path in a config."""

from __future__ import annotations

from pathlib import Path

from charlora.errors import PipelineError

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
REJECTED_DIR = Path("data/rejected")
CAPTIONED_DIR = Path("data/captioned")
CAPTION_CACHE_DIR = Path("data/cache/captions")
PRIOR_ROOT = Path("data/prior")  # prior preservation pictures per character (prior stage)
PRIOR_CACHE_DIR = Path("data/cache/prior")
BASE_SAMPLES_CACHE_DIR = Path("data/cache/base_samples")  # the base model's evaluation pictures (evaluate)
TRAIN_ROOT = Path("data/train")
HELDOUT_ROOT = Path("data/heldout")
BASE_MODELS_DIR = Path("models/base")  # the embedded base model and its CLIP, ready to load (base_model stage)
TINY_MODEL_DIR = BASE_MODELS_DIR / "flux2-klein-tiny"
TINY_CLIP_DIR = BASE_MODELS_DIR / "clip-tiny"
MICRO_MODEL_DIR = BASE_MODELS_DIR / "flux2-klein-micro"
MICRO_CLIP_DIR = BASE_MODELS_DIR / "clip-micro"
SHIPPED_MICRO_DIR = Path("models/micro")  # the micro model and CLIP as committed, with their sha256 manifests
TRAINING_DIR = Path("models/training")
LORA_DIR = Path("models/lora")
METRICS_DIR = Path("metrics")
SAMPLES_DIR = Path("models/samples")
EXPORT_DIR = Path("models/export")
EXPORT_REPORT_NAME = "report.json"  # in EXPORT_DIR: which file was verified from which adapter (publish reads it)
PUBLISHED_DIR = Path("models/published")  # Runware's test images (make publish)
PUBLISH_PLAN_FILE = METRICS_DIR / "publish_plan.json"
PUBLISH_MANIFEST_FILE = METRICS_DIR / "publish.json"
STORY_DIR = Path("story")  # the story and its reference images (the shots stage watches the whole folder)
STORY_FILE = STORY_DIR / "shots.yaml"
SHOTS_DIR = Path("models/shots")  # shots: <id>.png and storyboard.png
SHOT_CACHE_DIR = Path("data/cache/shots")  # rendered shots by cache key (kept between runs)
SHOTS_MANIFEST_FILE = METRICS_DIR / "shots.json"
REMOTE_SHOTS_DIR = SHOTS_DIR / "runware"  # `make shots REMOTE=runware` (ignored by dvc: .dvcignore)
REMOTE_SHOT_CACHE_DIR = Path("data/cache/shots_runware")
REMOTE_SHOTS_MANIFEST_FILE = METRICS_DIR / "shots_runware.json"
# Picture files the stages read (preprocess reads raw files of these suffixes; later stages only PNG they wrote).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, with every symlink followed, lies in ``folder`` (also resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def looks_local(value: str, root: Path) -> bool:
    """Whether a model setting names a local folder rather than a Hugging Face id (``org/name``)."""
    return (value.startswith(("/", ".", "~")) or (root / value).exists())


def project_path(value: str, key: str, root: Path, *, model: bool = False) -> Path | None:
    """``value`` of the param ``key`` as a path inside the project ``root``, or None for a Hub id.

    Relative paths are relative to ``root``; a path (or a symlink on the way) that leads outside it
    raises :class:`PipelineError` naming the param. ``model=True``: a value that is not a local
    path is a Hugging Face id and gives None.
    """
    if model and not looks_local(value, root):
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    if not is_inside(path, root):
        raise PipelineError(
            f"params.yaml: '{key}' is '{value}', which leads outside the project folder ({root.resolve()}) "
            f"to {path.resolve()}; nothing outside the project is read through a path in a config or a symlink. "
            "Move or copy it into the project (models/ for a model folder, validation/ for a prompts file) "
            "and give its path relative to the project.")
    return path
