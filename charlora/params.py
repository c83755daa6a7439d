"""``params.yaml``: typed, validated parameters for every stage.

Each section is a frozen dataclass. :func:`load_params` reads the whole file and checks every
key before a stage does any work: an unknown key, a wrong type or an out-of-range value raises a
:class:`~charlora.errors.PipelineError` that names the key (``train.lora.rank``) and what is
allowed. ``null`` in a ``train`` value means "the base model's default" (see
:mod:`charlora.models.registry`), which is what makes the real model one param away.
Paths in params (``base_model.path``, ``evaluate.prompts_file``, and ``caption.model`` or
``evaluate.clip_model`` when they name a local folder) must lie inside the project folder.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charlora.errors import PipelineError
from charlora.layout import project_path
from charlora.models.registry import get_base_model
from charlora.models.flux2_layers import DOUBLE_TARGETS, LORA_FORMATS, SINGLE_TARGETS

PARAMS_FILE = Path("params.yaml")


def _limits(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@dataclass(frozen=True)
class CharacterParams:
    name: str = field(metadata=_limits(pattern=r"[a-z0-9][a-z0-9_-]{0,63}"))
    trigger: str = field(metadata=_limits(pattern=r"[^,\s]{2,64}"))


@dataclass(frozen=True)
class PreprocessParams:
    size: int = field(metadata=_limits(min=64, max=4096, multiple_of=16))
    resize: str = field(metadata=_limits(choices=("fit", "crop", "pad")))
    min_side: int = field(metadata=_limits(min=16))
    max_aspect_ratio: float = field(metadata=_limits(min=1.0, max=20.0))
    duplicate_threshold: int = field(metadata=_limits(min=0, max=64))
    max_pixels: int = field(metadata=_limits(min=1_000_000))
    workers: int = field(metadata=_limits(min=0, max=256))


@dataclass(frozen=True)
class CaptionParams:
    captioner: str = field(metadata=_limits(choices=("florence2", "none")))
    model: str = field(metadata=_limits(pattern=r".+"))
    task: str = field(metadata=_limits(choices=("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")))
    max_new_tokens: int = field(metadata=_limits(min=8, max=1024))
    num_beams: int = field(metadata=_limits(min=1, max=8))
    max_chars: int = field(metadata=_limits(min=20, max=4000))
    device: str = field(metadata=_limits(choices=("auto", "cpu", "cuda", "mps")))


@dataclass(frozen=True)
class MergeParams:
    heldout_fraction: float = field(metadata=_limits(min=0.0, max=0.5))
    seed: int = field(metadata=_limits(min=0))
    preview_prompts: list[str] = field(metadata=_limits(min_items=1))


@dataclass(frozen=True)
class BaseModelParams:
    name: str
    path: str | None


@dataclass(frozen=True)
class TinyModelParams:
    seed: int = field(metadata=_limits(min=0))
    num_layers: int = field(metadata=_limits(min=1, max=5))
    num_single_layers: int = field(metadata=_limits(min=1, max=20))
    num_attention_heads: int = field(metadata=_limits(min=1, max=8))
    attention_head_dim: int = field(metadata=_limits(min=16, max=64, multiple_of=16))
    text_hidden_size: int = field(metadata=_limits(min=16, max=256, multiple_of=16))
    vocab_size: int = field(metadata=_limits(min=300, max=4096))


@dataclass(frozen=True)
class BlockRangeParams:
    start: int = field(metadata=_limits(min=0))
    end: int | None = field(default=None, metadata=_limits(min=1))


@dataclass(frozen=True)
class LoraParams:
    rank: int = field(metadata=_limits(min=1, max=256))
    alpha: float | None = field(metadata=_limits(min=0.0))
    double_targets: list[str] = field(metadata=_limits(item_choices=DOUBLE_TARGETS))
    single_targets: list[str] = field(metadata=_limits(item_choices=SINGLE_TARGETS))
    double_blocks: BlockRangeParams = field(metadata=_limits())
    single_blocks: BlockRangeParams = field(metadata=_limits())


@dataclass(frozen=True)
class TrainParams:
    seed: int = field(metadata=_limits(min=0))
    resolution: int | None = field(metadata=_limits(min=16, max=2048, multiple_of=16))
    epochs: int | None = field(metadata=_limits(min=1, max=100_000))
    batch_size: int = field(metadata=_limits(min=1, max=64))
    learning_rate: float = field(metadata=_limits(min=1e-8, max=1.0))
    optimizer: str = field(metadata=_limits(choices=("AdamW", "Adam")))
    steps: int | None = field(metadata=_limits(min=1, max=1000))
    guidance: float | None = field(metadata=_limits(min=0.0, max=20.0))
    timestep_low: int | None = field(metadata=_limits(min=0))
    timestep_high: int | None = field(metadata=_limits(min=1))
    quantize: int | None = field(metadata=_limits(choices=(3, 4, 5, 6, 8)))  # mflux's quantization bits
    low_ram: bool | None
    checkpoint_every: int | None = field(metadata=_limits(min=1))
    preview_every: int | None = field(metadata=_limits(min=0))
    preview_resolution: int | None = field(metadata=_limits(min=16, max=2048, multiple_of=16))
    lora: LoraParams


@dataclass(frozen=True)
class ScoreWeights:
    identity: float = field(metadata=_limits(min=0.0))
    prompt_fit: float = field(metadata=_limits(min=0.0))
    leakage: float = field(metadata=_limits(min=0.0))
    diversity: float = field(metadata=_limits(min=0.0))


@dataclass(frozen=True)
class EvaluateParams:
    num_timesteps: int = field(metadata=_limits(min=1, max=100))
    noise_seed: int = field(metadata=_limits(min=0))
    prompts_file: str
    max_prompts: int | None = field(metadata=_limits(min=1))
    control_prompts: int = field(metadata=_limits(min=1))
    image_checkpoints: int | None = field(metadata=_limits(min=1))
    lora_scale: float = field(metadata=_limits(min=0.0, max=2.0))
    seed: int = field(metadata=_limits(min=0))
    steps: int | None = field(metadata=_limits(min=1, max=200))
    guidance: float | None = field(metadata=_limits(min=0.0, max=20.0))
    resolution: int | None = field(metadata=_limits(min=16, max=2048, multiple_of=16))
    clip_model: str | None
    score_weights: ScoreWeights


@dataclass(frozen=True)
class HubParams:
    repo_id: str | None = field(metadata=_limits(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"))
    private: bool
    license: str = field(metadata=_limits(pattern=r"[a-z0-9][a-z0-9.+-]*"))
    tags: list[str]


@dataclass(frozen=True)
class RunwareParams:
    enabled: bool
    base_model: str | None = field(metadata=_limits(pattern=r"[a-z0-9_-]+:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+"))
    architecture: str = field(metadata=_limits(pattern=r"auto|[a-z0-9_.-]{2,64}"))
    air_source: str = field(metadata=_limits(pattern=r"[a-z0-9_-]{1,64}"))
    model_id: str | None = field(metadata=_limits(pattern=r"[A-Za-z0-9_.-]{1,96}"))
    private: bool
    lora_weight: float = field(metadata=_limits(min=-4.0, max=4.0))
    prompts: list[str] = field(metadata=_limits(min_items=1))
    width: int = field(metadata=_limits(min=128, max=2048, multiple_of=16))
    height: int = field(metadata=_limits(min=128, max=2048, multiple_of=16))
    steps: int = field(metadata=_limits(min=1, max=100))
    guidance: float = field(metadata=_limits(min=0.0, max=20.0))
    seed: int = field(metadata=_limits(min=0))
    timeout_s: float = field(metadata=_limits(min=0.1, max=3600.0))
    lora_format: str = field(metadata=_limits(choices=LORA_FORMATS))


@dataclass(frozen=True)
class ExportParams:
    formats: list[str] = field(metadata=_limits(min_items=1, item_choices=LORA_FORMATS))


@dataclass(frozen=True)
class PublishParams:
    hf: HubParams
    runware: RunwareParams
    retries: int = field(metadata=_limits(min=1, max=20))
    backoff_s: float = field(metadata=_limits(min=0.0, max=120.0))


@dataclass(frozen=True)
class Params:
    character: CharacterParams
    preprocess: PreprocessParams
    caption: CaptionParams
    merge: MergeParams
    base_model: BaseModelParams
    tiny_model: TinyModelParams
    train: TrainParams
    evaluate: EvaluateParams
    export: ExportParams
    publish: PublishParams


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate the whole params file; raise :class:`PipelineError` naming a bad key.

    The file's folder is the project folder: local paths in it must lie inside it
    (:func:`check_local_paths`).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found. Run the pipeline from the project folder (where params.yaml is).")
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML ({error}). Fix the file and run again.")
    params = parse_params(raw, source=str(path))
    check_local_paths(params, Path(path).resolve().parent)
    return params


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Build :class:`Params` from a parsed YAML mapping, validating every key."""
    # Every key is checked, the top level included: an unknown section (a typo, or one of dvc's own
    # sections such as `plots`, which belong in dvc.yaml) is an error naming it.
    params = _build(Params, raw, prefix="", source=source)
    get_base_model(params.base_model.name)  # an unknown or distilled name: a PipelineError naming the choices
    return params


def check_local_paths(params: Params, root: Path) -> None:
    """Every local path in ``params`` must resolve (symlinks followed) inside the project ``root``."""
    if params.base_model.path is not None:
        project_path(params.base_model.path, "base_model.path", root)
    project_path(params.evaluate.prompts_file, "evaluate.prompts_file", root)
    project_path(params.caption.model, "caption.model", root, model=True)
    if params.evaluate.clip_model is not None:
        project_path(params.evaluate.clip_model, "evaluate.clip_model", root, model=True)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: {where} must be a mapping of keys, got {type(raw).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PipelineError(
            f"{source}: unknown key '{prefix}{unknown[0]}'. Known keys here: {', '.join(sorted(fields))}. "
            "Check the spelling or remove it."
        )
    values = {}
    for name, spec in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if spec.default is not dataclasses.MISSING:
                values[name] = spec.default
                continue
            raise PipelineError(f"{source}: missing key '{key}'. Add it (see the README's params table).")
        values[name] = _check_value(hints[name], raw[name], key, dict(spec.metadata), source)
    return cls(**values)


def _check_value(hint: Any, value: Any, key: str, limits: dict[str, Any], source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        return _check_value(options[0], value, key, limits, source)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.", source=source)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise PipelineError(f"{source}: '{key}' must be a list, got {value!r}.")
        if len(value) < limits.get("min_items", 0):
            raise PipelineError(f"{source}: '{key}' needs at least {limits['min_items']} item(s).")
        item_limits = {"choices": limits["item_choices"]} if "item_choices" in limits else {}
        return [_check_scalar(item_type, item, f"{key}[{i}]", item_limits, source) for i, item in enumerate(value)]
    return _check_scalar(hint, value, key, limits, source)


def _check_scalar(hint: type, value: Any, key: str, limits: dict[str, Any], source: str) -> Any:
    if value is None:
        raise PipelineError(f"{source}: '{key}' must not be empty (null).")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise PipelineError(f"{source}: '{key}' must be of type {hint.__name__}, got {value!r} ({type(value).__name__}).")
    value = float(value) if hint is float else value
    if "choices" in limits and value not in limits["choices"]:
        allowed = ", ".join(str(c) for c in limits["choices"])
        raise PipelineError(f"{source}: '{key}' is {value!r}; allowed values: {allowed}.")
    if "min" in limits and value < limits["min"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be at least {limits['min']}.")
    if "max" in limits and value > limits["max"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be at most {limits['max']}.")
    if "multiple_of" in limits and value % limits["multiple_of"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be a multiple of {limits['multiple_of']}.")
    if "pattern" in limits and not re.fullmatch(limits["pattern"], value):
        raise PipelineError(f"{source}: '{key}' is {value!r}; it must match {limits['pattern']}.")
    return value
