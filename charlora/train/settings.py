"""Effective training settings: params with ``null`` filled from the base model, checked against it,
and the checks of the training data and the model folder that run before anything heavy starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlora.errors import PipelineError
from charlora.layout import IMAGE_SUFFIXES
from charlora.models.registry import TINY, BaseModelSpec, get_base_model
from charlora.params import Params
from charlora.train.presets import PresetSettings


@dataclass(frozen=True)
class TrainSettings:
    """The effective training values: params, then the memory preset's, then the model's defaults."""

    seed: int
    resolution: int
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    lr_schedule: str
    lr_warmup_steps: int
    steps: int
    guidance: float
    timestep_low: int
    timestep_high: int
    quantize: int | None  # bits; None: the weights as stored (params' 0)
    low_ram: bool
    gradient_checkpointing: bool
    cache_limit_gb: float | None
    checkpoint_every: int
    preview_every: int
    preview_resolution: int
    rank: int
    alpha: float | None
    double_targets: tuple[str, ...]
    single_targets: tuple[str, ...]
    double_blocks: tuple[int, int]
    single_blocks: tuple[int, int]
    preset: str = "none"  # the memory preset these values came from ("none": params and model defaults only)


def base_model_for(params: Params) -> BaseModelSpec:
    """The base model of ``base_model.name``, with the tiny model's block counts from ``tiny_model``."""
    tiny = params.tiny_model
    return get_base_model(params.base_model.name, (tiny.num_layers, tiny.num_single_layers))


# The train params a memory preset sets; an explicit (non-null) value wins over the preset's.
PRESET_FIELDS = ("quantize", "gradient_checkpointing", "low_ram", "resolution", "batch_size", "cache_limit_gb")


def preset_overrides(params: Params) -> dict[str, object]:
    """The train params set explicitly (not null) that a preset would otherwise set."""
    return {name: getattr(params.train, name) for name in PRESET_FIELDS if getattr(params.train, name) is not None}


def resolve_settings(params: Params, model: BaseModelSpec, preset: PresetSettings | None = None,
                     preset_name: str = "none") -> TrainSettings:
    """Fill ``null`` train params from the memory preset, then the model defaults, and check them against the model.

    Raises :class:`PipelineError` naming the param when a value cannot work with this model.
    """
    train, lora, defaults = params.train, params.train.lora, model.defaults

    def pick(value, default):
        return default if value is None else value

    def preset_value(name, default):
        return default if preset is None or getattr(preset, name) is None else getattr(preset, name)

    steps = pick(train.steps, defaults.steps)
    low = pick(train.timestep_low, defaults.timestep_low if train.steps is None else 0)
    high = pick(train.timestep_high, defaults.timestep_high if train.steps is None else steps)
    if high > steps:
        raise PipelineError(f"params.yaml: 'train.timestep_high' is {high}; it must be at most train.steps ({steps}).")
    if low >= high:
        raise PipelineError(f"params.yaml: 'train.timestep_low' ({low}) must be below train.timestep_high ({high}).")
    # Each target is one of charlora.models.flux2_layers' block layers (checked when params.yaml is read).
    for key, targets in (("double_targets", lora.double_targets), ("single_targets", lora.single_targets)):
        if len(set(targets)) != len(targets):
            raise PipelineError(f"params.yaml: 'train.lora.{key}' lists a target twice.")
    if not lora.double_targets and not lora.single_targets:
        raise PipelineError("params.yaml: 'train.lora.double_targets' and 'single_targets' are both empty; "
                            "list at least one layer to train.")
    blocks = {}
    for key, block_range, count in (("double_blocks", lora.double_blocks, model.num_double_blocks),
                                    ("single_blocks", lora.single_blocks, model.num_single_blocks)):
        end = count if block_range.end is None else block_range.end
        if end > count or block_range.start >= end:
            raise PipelineError(
                f"params.yaml: 'train.lora.{key}' is start {block_range.start}, end {block_range.end}; "
                f"{model.name} has {count} such blocks, so use 0 <= start < end <= {count} (end null = all).")
        blocks[key] = (block_range.start, end)
    quantize = pick(train.quantize, preset_value("quantize", 0)) or None  # 0: weights as stored
    return TrainSettings(
        seed=train.seed, resolution=pick(train.resolution, preset_value("resolution", defaults.resolution)),
        epochs=pick(train.epochs, defaults.epochs), batch_size=pick(train.batch_size, preset_value("batch_size", 1)),
        learning_rate=pick(train.learning_rate, defaults.learning_rate), optimizer=train.optimizer,
        lr_schedule=pick(train.lr_schedule, defaults.lr_schedule),
        lr_warmup_steps=pick(train.lr_warmup_steps, defaults.lr_warmup_steps), steps=steps,
        guidance=pick(train.guidance, defaults.guidance), timestep_low=low, timestep_high=high, quantize=quantize,
        low_ram=pick(train.low_ram, preset_value("low_ram", defaults.low_ram)),
        gradient_checkpointing=pick(train.gradient_checkpointing, preset_value("gradient_checkpointing", False)),
        cache_limit_gb=pick(train.cache_limit_gb, preset_value("cache_limit_gb", None)),
        checkpoint_every=pick(train.checkpoint_every, defaults.checkpoint_every),
        preview_every=pick(train.preview_every, defaults.preview_every),
        preview_resolution=pick(train.preview_resolution, defaults.preview_resolution),
        rank=lora.rank, alpha=lora.alpha, double_targets=tuple(lora.double_targets),
        single_targets=tuple(lora.single_targets), double_blocks=blocks["double_blocks"],
        single_blocks=blocks["single_blocks"], preset=preset_name,
    )


def check_dataset(train_dir: Path) -> list[Path]:
    """The training images in ``train_dir``; each must have a non-empty caption ``.txt``."""
    if not train_dir.is_dir():
        raise PipelineError(f"training folder {train_dir} does not exist. Run the earlier stages first: dvc repro merge.")
    images = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PipelineError(f"no training images in {train_dir}. Put images in data/raw and run dvc repro.")
    for image in images:
        caption = image.with_suffix(".txt")
        if not caption.exists() or not caption.read_text(encoding="utf-8").strip():
            raise PipelineError(f"{image} has no caption ({caption.name} is missing or empty). Run dvc repro caption merge.")
    return images


def check_model_path(params: Params, embedded_dir: Path | None = None) -> str | None:
    """The local model folder to load, or None to let mflux download ``base_model.name``.

    ``base_model.path: null`` means the embedded model's folder for the embedded models (the micro
    model installed and the tiny one built by the base_model stage; ``embedded_dir`` overrides the
    registry's folder) and a download for the real ones, so switching models is one param.
    """
    spec = base_model_for(params)
    path = params.base_model.path
    if path is None and spec.local_dir is not None:
        path = str(embedded_dir or spec.local_dir)
    if path is None:
        return None
    if not Path(path).is_dir() or not (Path(path) / "transformer").is_dir():
        hint = ("Run `dvc repro base_model` to install it" if spec.local_dir is not None and params.base_model.path is None
                else "Fix the path, or set it to null to let mflux download base_model.name")
        raise PipelineError(
            f"base_model.path '{path}' is not a FLUX.2 Klein model folder (it needs transformer/, text_encoder/, "
            f"vae/ and tokenizer/). {hint}.")
    return path
