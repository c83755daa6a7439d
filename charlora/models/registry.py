"""The FLUX.2 Klein base models this pipeline trains on, and their training defaults.

``params.yaml`` names one with ``base_model.name``. Training values left ``null`` in the
``train`` section take the model's defaults from here, so switching from the embedded micro
model to the real FLUX.2 Klein Base 4B is one line: ``base_model.name: flux2-klein-base-4b``.

Two models are embedded (no download): ``flux2-klein-micro``, pretrained on a cartoon world and
shipped in ``models/micro/`` (the default: the run shows a character being learned), and
``flux2-klein-tiny``, random weights built in seconds (tests that only need the code paths).
"""

from __future__ import annotations

from dataclasses import dataclass

from charlora.errors import PipelineError

TINY = "flux2-klein-tiny"
MICRO = "flux2-klein-micro"


@dataclass(frozen=True)
class TrainDefaults:
    """A base model's training values for ``train`` params left null."""

    resolution: int
    epochs: int
    steps: int  # sampling steps of the timestep grid (and of previews)
    guidance: float
    timestep_low: int
    timestep_high: int
    low_ram: bool
    checkpoint_every: int
    preview_every: int  # 0: no preview images during training
    preview_resolution: int
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 over the run)
    lr_warmup_steps: int = 0  # steps of linear warm-up from 0 to learning_rate


# A story's shot size on the real FLUX.2 Klein models: 9:16 vertical (nearly), multiples of 16, about 1 MP.
REAL_SHOT_SIZE = (768, 1344)


@dataclass(frozen=True)
class SampleDefaults:
    """Image generation in evaluate and shots: FLUX.2 Klein Base samples in about 50 steps at guidance about 4.

    ``shot_size`` (width, height) is what the story's sizes scale to on this model: a story written for
    the real models (768x1344) renders at ``shot_size`` here, and every other size in the story by the
    same factor (see :mod:`charlora.shots.plan`). ``max_side`` caps a scaled shot's longer side.
    """

    steps: int
    guidance: float
    resolution: int
    clip_model: str
    max_prompts: int | None  # None: every prompt in the prompts file
    image_checkpoints: int | None  # None: every checkpoint
    prompts_file: str = "validation/test_prompts.json"
    prior_per_image: int = 0  # prior-preservation pictures per training picture (0: none)
    shot_size: tuple[int, int] = REAL_SHOT_SIZE
    max_side: int = 2048

    @property
    def shot_scale(self) -> float:
        """The factor from a story's sizes (written for the real models) to this model's."""
        return max(self.shot_size) / max(REAL_SHOT_SIZE)


_REAL_SAMPLING = SampleDefaults(steps=50, guidance=4.0, resolution=1024, clip_model="openai/clip-vit-base-patch32",
                                max_prompts=None, image_checkpoints=3)


@dataclass(frozen=True)
class BaseModelSpec:
    """One base model: the mflux registry key, its block counts, defaults and what it needs."""

    name: str
    mflux_name: str
    hf_repo: str
    num_double_blocks: int
    num_single_blocks: int
    defaults: TrainDefaults
    memory: str
    sampling: SampleDefaults = _REAL_SAMPLING
    runware_air: str = "runware:400@5"  # the same base model on Runware, for the publish test inference
    local_dir: str | None = None  # an embedded model's folder (base_model.path null); None: mflux downloads hf_repo
    geometry_from_folder: bool = False  # mflux learns the model's sizes from its folder (charlora.models.folder)


# The project plan's defaults for the real models: 1024 px, 100 epochs, timesteps 25-40 of 40.
_REAL_DEFAULTS = TrainDefaults(resolution=1024, epochs=100, steps=40, guidance=1.0, timestep_low=25, timestep_high=40,
                               low_ram=True, checkpoint_every=25, preview_every=0, preview_resolution=512)

BASE_MODELS: dict[str, BaseModelSpec] = {
    "flux2-klein-base-4b": BaseModelSpec(
        "flux2-klein-base-4b", "flux2-klein-base-4b", "black-forest-labs/FLUX.2-klein-base-4B", 5, 20, _REAL_DEFAULTS,
        memory="about 16 GB download; 16 GB (4-bit) to 32 GB+ (bfloat16) of memory: charlora.train.presets"),
    "flux2-klein-base-9b": BaseModelSpec(
        "flux2-klein-base-9b", "flux2-klein-base-9b", "black-forest-labs/FLUX.2-klein-base-9B", 8, 24, _REAL_DEFAULTS,
        memory="about 35 GB download; 16 GB (4-bit, 512 px) to 64 GB (bfloat16): charlora.train.presets",
        runware_air="runware:400@3"),
    MICRO: BaseModelSpec(
        MICRO, MICRO, "charlora/flux2-klein-micro", 2, 2,
        TrainDefaults(resolution=128, epochs=3, steps=20, guidance=1.0, timestep_low=0, timestep_high=20,
                      low_ram=False, checkpoint_every=20, preview_every=0, preview_resolution=128, learning_rate=1e-3),
        memory="shipped in models/micro (about 7 MB); under 1 GB RAM at 128 px",
        sampling=SampleDefaults(steps=12, guidance=4.0, resolution=128, clip_model="models/base/clip-micro",
                                max_prompts=6, image_checkpoints=2, prompts_file="validation/micro_prompts.json",
                                prior_per_image=2, shot_size=(64, 112), max_side=256),
        local_dir="models/base/flux2-klein-micro", geometry_from_folder=True),
    TINY: BaseModelSpec(
        TINY, TINY, "black-forest-labs/FLUX.2-klein-base-4B", 1, 1,
        TrainDefaults(resolution=64, epochs=2, steps=8, guidance=1.0, timestep_low=0, timestep_high=8,
                      low_ram=False, checkpoint_every=4, preview_every=0, preview_resolution=64),
        memory="built locally in seconds (the VAE is full size, about 160 MB); under 1 GB RAM at 64 px",
        sampling=SampleDefaults(steps=4, guidance=4.0, resolution=32, clip_model="models/base/clip-tiny",
                                max_prompts=3, image_checkpoints=2, shot_size=(32, 64), max_side=256),
        local_dir="models/base/flux2-klein-tiny"),
}

# Step-distilled Klein models generate in 4 steps; training a LoRA on them gives poor results.
DISTILLED = {"flux2-klein-4b": "flux2-klein-base-4b", "flux2-klein-9b": "flux2-klein-base-9b",
             "flux2-klein-9b-kv": "flux2-klein-base-9b", "klein-4b": "flux2-klein-base-4b", "klein-9b": "flux2-klein-base-9b"}


def get_base_model(name: str, tiny_geometry: tuple[int, int] | None = None) -> BaseModelSpec:
    """Look up ``base_model.name``; refuse distilled models with the base model to use instead.

    ``tiny_geometry`` (double, single block counts from ``tiny_model``) replaces the tiny model's.
    """
    if name.lower() in DISTILLED:
        raise PipelineError(
            f"base_model.name '{name}' is a step-distilled FLUX.2 Klein model; LoRAs are trained on the base model. "
            f"Set base_model.name: {DISTILLED[name.lower()]}."
        )
    spec = BASE_MODELS.get(name)
    if spec is None:
        raise PipelineError(f"base_model.name '{name}' is not known. Use one of: {', '.join(BASE_MODELS)}.")
    if name == TINY and tiny_geometry is not None:
        from dataclasses import replace

        spec = replace(spec, num_double_blocks=tiny_geometry[0], num_single_blocks=tiny_geometry[1])
    return spec
