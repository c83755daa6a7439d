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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charlora.errors import PipelineError
from charlora.layout import project_path
from charlora.models.registry import get_base_model
from charlora.schema import build, limits
from charlora.models.flux2_layers import DOUBLE_TARGETS, LORA_FORMATS, SINGLE_TARGETS

PARAMS_FILE = Path("params.yaml")
# train.preset: the machine sizes of charlora.train.presets, auto (pick one) or none (no preset).
PRESET_CHOICES = ("auto", "16gb", "24gb", "32gb", "48gb", "64gb", "none")


@dataclass(frozen=True)
class CharacterParams:
    """``character``: the name of outputs and the trigger word."""

    name: str = field(metadata=limits(pattern=r"[a-z0-9][a-z0-9_-]{0,63}"))
    trigger: str = field(metadata=limits(pattern=r"[^,\s]{2,64}"))


@dataclass(frozen=True)
class PreprocessParams:
    """``preprocess``: size, resize policy and reject limits."""

    size: int = field(metadata=limits(min=64, max=4096, multiple_of=16))
    resize: str = field(metadata=limits(choices=("fit", "crop", "pad")))
    min_side: int = field(metadata=limits(min=16))
    max_aspect_ratio: float = field(metadata=limits(min=1.0, max=20.0))
    duplicate_threshold: int = field(metadata=limits(min=0, max=64))
    max_pixels: int = field(metadata=limits(min=1_000_000))
    workers: int = field(metadata=limits(min=0, max=256))


@dataclass(frozen=True)
class CaptionParams:
    """``caption``: the captioner and its settings."""

    captioner: str = field(metadata=limits(choices=("florence2", "none")))
    model: str = field(metadata=limits(pattern=r".+"))
    task: str = field(metadata=limits(choices=("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")))
    max_new_tokens: int = field(metadata=limits(min=8, max=1024))
    num_beams: int = field(metadata=limits(min=1, max=8))
    max_chars: int = field(metadata=limits(min=20, max=4000))
    device: str = field(metadata=limits(choices=("auto", "cpu", "cuda", "mps")))


@dataclass(frozen=True)
class MergeParams:
    """``merge``: the held-out split and mflux preview prompts."""

    heldout_fraction: float = field(metadata=limits(min=0.0, max=0.5))
    seed: int = field(metadata=limits(min=0))
    preview_prompts: list[str] = field(metadata=limits(min_items=1))


@dataclass(frozen=True)
class PriorParams:
    """``prior``: prior preservation, the base model's own pictures for the training captions without the trigger."""

    per_image: int | None = field(metadata=limits(min=0, max=8))  # null: the base model's default (micro 2, others 0)
    seed: int = field(metadata=limits(min=0))
    steps: int | None = field(metadata=limits(min=1, max=200))
    guidance: float | None = field(metadata=limits(min=0.0, max=20.0))
    workers: int | None = field(default=None, metadata=limits(min=1, max=64))  # null: embedded model on a CPU: all cores; else 1


@dataclass(frozen=True)
class BaseModelParams:
    """``base_model``: which FLUX.2 Klein, and an optional local folder inside the project."""

    name: str
    path: str | None


@dataclass(frozen=True)
class TinyModelParams:
    """``tiny_model``: geometry of the embedded tiny model."""

    seed: int = field(metadata=limits(min=0))
    num_layers: int = field(metadata=limits(min=1, max=5))
    num_single_layers: int = field(metadata=limits(min=1, max=20))
    num_attention_heads: int = field(metadata=limits(min=1, max=8))
    attention_head_dim: int = field(metadata=limits(min=16, max=64, multiple_of=16))
    text_hidden_size: int = field(metadata=limits(min=16, max=256, multiple_of=16))
    vocab_size: int = field(metadata=limits(min=300, max=4096))


@dataclass(frozen=True)
class BlockRangeParams:
    """A range of transformer blocks (``end`` exclusive; null = all)."""

    start: int = field(metadata=limits(min=0))
    end: int | None = field(default=None, metadata=limits(min=1))


@dataclass(frozen=True)
class LoraParams:
    """``train.lora``: rank, alpha, target layers and block ranges."""

    rank: int = field(metadata=limits(min=1, max=256))
    alpha: float | None = field(metadata=limits(min=0.0))
    double_targets: list[str] = field(metadata=limits(item_choices=DOUBLE_TARGETS))
    single_targets: list[str] = field(metadata=limits(item_choices=SINGLE_TARGETS))
    double_blocks: BlockRangeParams = field(metadata=limits())
    single_blocks: BlockRangeParams = field(metadata=limits())


@dataclass(frozen=True)
class TrainParams:
    """``train``: mflux training settings (null = the memory preset's value, else the base model's default)."""

    seed: int = field(metadata=limits(min=0))
    resolution: int | None = field(metadata=limits(min=16, max=2048, multiple_of=16))
    epochs: int | None = field(metadata=limits(min=1, max=100_000))
    batch_size: int | None = field(metadata=limits(min=1, max=64))
    learning_rate: float | None = field(metadata=limits(min=1e-8, max=1.0))
    optimizer: str = field(metadata=limits(choices=("AdamW", "Adam")))
    steps: int | None = field(metadata=limits(min=1, max=1000))
    guidance: float | None = field(metadata=limits(min=0.0, max=20.0))
    timestep_low: int | None = field(metadata=limits(min=0))
    timestep_high: int | None = field(metadata=limits(min=1))
    quantize: int | None = field(metadata=limits(choices=(0, 3, 4, 5, 6, 8)))  # mflux's bits; 0: weights as stored
    low_ram: bool | None
    checkpoint_every: int | None = field(metadata=limits(min=1))
    preview_every: int | None = field(metadata=limits(min=0))
    preview_resolution: int | None = field(metadata=limits(min=16, max=2048, multiple_of=16))
    lora: LoraParams
    # Memory (charlora.train.presets, charlora.train.preflight); defaults for params files written before them.
    preset: str = field(default="auto", metadata=limits(choices=PRESET_CHOICES))
    force: bool = False  # train even when the pre-flight estimate exceeds the machine's memory
    gradient_checkpointing: bool | None = None
    cache_limit_gb: float | None = field(default=None, metadata=limits(min=0.25, max=1024.0))
    # Learning-rate schedule (mflux's); defaults for params files written before them.
    lr_schedule: str | None = field(default=None, metadata=limits(choices=("constant", "cosine")))
    lr_warmup_steps: int | None = field(default=None, metadata=limits(min=0))


@dataclass(frozen=True)
class ScoreWeights:
    """``evaluate.score_weights``: the weights of the checkpoint score."""

    identity: float = field(metadata=limits(min=0.0))
    prompt_fit: float = field(metadata=limits(min=0.0))
    leakage: float = field(metadata=limits(min=0.0))
    diversity: float = field(metadata=limits(min=0.0))


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: held-out loss, sampling and CLIP settings."""

    num_timesteps: int = field(metadata=limits(min=1, max=100))
    noise_seed: int = field(metadata=limits(min=0))
    prompts_file: str | None  # null: the base model's (micro: validation/micro_prompts.json)
    max_prompts: int | None = field(metadata=limits(min=1))
    control_prompts: int = field(metadata=limits(min=1))
    image_checkpoints: int | None = field(metadata=limits(min=1))
    lora_scale: float = field(metadata=limits(min=0.0, max=2.0))
    seed: int = field(metadata=limits(min=0))
    steps: int | None = field(metadata=limits(min=1, max=200))
    guidance: float | None = field(metadata=limits(min=0.0, max=20.0))
    resolution: int | None = field(metadata=limits(min=16, max=2048, multiple_of=16))
    clip_model: str | None
    score_weights: ScoreWeights


@dataclass(frozen=True)
class HubParams:
    """``publish.hf``: the Hugging Face repo."""

    repo_id: str | None = field(metadata=limits(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"))
    private: bool
    license: str = field(metadata=limits(pattern=r"[a-z0-9][a-z0-9.+-]*"))
    tags: list[str]


@dataclass(frozen=True)
class RunwareParams:
    """``publish.runware``: registration and test inference on Runware."""

    enabled: bool
    base_model: str | None = field(metadata=limits(pattern=r"[a-z0-9_-]+:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+"))
    architecture: str = field(metadata=limits(pattern=r"auto|[a-z0-9_.-]{2,64}"))
    air_source: str = field(metadata=limits(pattern=r"[a-z0-9_-]{1,64}"))
    model_id: str | None = field(metadata=limits(pattern=r"[A-Za-z0-9_.-]{1,96}"))
    private: bool
    lora_weight: float = field(metadata=limits(min=-4.0, max=4.0))
    prompts: list[str] = field(metadata=limits(min_items=1))
    width: int = field(metadata=limits(min=128, max=2048, multiple_of=16))
    height: int = field(metadata=limits(min=128, max=2048, multiple_of=16))
    steps: int = field(metadata=limits(min=1, max=100))
    guidance: float = field(metadata=limits(min=0.0, max=20.0))
    seed: int = field(metadata=limits(min=0))
    timeout_s: float = field(metadata=limits(min=0.1, max=3600.0))
    lora_format: str = field(metadata=limits(choices=LORA_FORMATS))


@dataclass(frozen=True)
class ExportParams:
    """``export``: the formats the export stage writes."""

    formats: list[str] = field(metadata=limits(min_items=1, item_choices=LORA_FORMATS))


@dataclass(frozen=True)
class PublishParams:
    """``publish``: the Hub, Runware and retries."""

    hf: HubParams
    runware: RunwareParams
    retries: int = field(metadata=limits(min=1, max=20))
    backoff_s: float = field(metadata=limits(min=0.0, max=120.0))


@dataclass(frozen=True)
class Params:
    """The whole params.yaml, one field per section."""

    character: CharacterParams
    preprocess: PreprocessParams
    caption: CaptionParams
    merge: MergeParams
    prior: PriorParams
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
    params = build(Params, raw, prefix="", source=source)
    get_base_model(params.base_model.name)  # an unknown or distilled name: a PipelineError naming the choices
    return params


def check_local_paths(params: Params, root: Path) -> None:
    """Every local path in ``params`` must resolve (symlinks followed) inside the project ``root``."""
    if params.base_model.path is not None:
        project_path(params.base_model.path, "base_model.path", root)
    if params.evaluate.prompts_file is not None:
        project_path(params.evaluate.prompts_file, "evaluate.prompts_file", root)
    project_path(params.caption.model, "caption.model", root, model=True)
    if params.evaluate.clip_model is not None:
        project_path(params.evaluate.clip_model, "evaluate.clip_model", root, model=True)
