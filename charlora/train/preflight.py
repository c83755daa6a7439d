"""Before anything loads: pick the memory preset, estimate the peak, and refuse a run that cannot fit.

:func:`plan_memory` resolves the settings of every preset of the base model (the params' explicit
``train.*`` values on top of each), estimates each run's peak (:mod:`charlora.train.memory`) and
chooses: ``train.preset: auto`` takes, among the presets named for a machine of this one's size or
smaller, the largest whose estimate fits the memory training may use on this machine
(:mod:`charlora.machine`); a named preset is taken as named, ``none`` takes no preset. A run whose
estimate does not fit stops with a :class:`PipelineError` that gives the estimate, the machine's
memory and the presets that would fit, unless ``train.force`` is true. When the machine's memory
cannot be detected, ``auto`` falls back to the most conservative preset and the check assumes a Mac
of the preset's size (``none``: no check). :func:`plan_model_memory` does it for a registered base
model and its training images, before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from charlora.errors import PipelineError
from charlora.machine import APPLE_USABLE, GB, MachineMemory
from charlora.models.geometry import ModelSizes
from charlora.models.registry import BaseModelSpec
from charlora.params import Params
from charlora.progress import duration
from charlora.train.eta import TimeEstimate, estimate_time
from charlora.train.memory import MemoryEstimate, Workload, backend_for, estimate_memory, workload
from charlora.train.presets import FALLBACK, PRESET_NAMES, PresetSettings, fits_everywhere, nominal_gb, presets_for
from charlora.train.settings import TrainSettings, preset_overrides, resolve_settings

TIGHT = 0.9  # an estimate above this share of the budget is reported as tight
SIZE_TOLERANCE = 0.95  # a machine counts as "N GB" from 95 % of N GB (cards and RAM report a little less)

Estimator = Callable[[TrainSettings], MemoryEstimate]


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen preset, the settings it resolves to, their estimate and whether they fit."""

    preset: str                      # "24gb", or "none"
    reason: str                      # why this preset
    settings: TrainSettings
    estimate: MemoryEstimate
    machine: MachineMemory
    budget_bytes: int | None         # what the run may use: the machine's usable memory, or the assumed one
    fits: bool | None                # None: not checked (memory unknown and no preset)
    candidates: dict[str, MemoryEstimate]  # every preset's estimate with the params' overrides
    time: TimeEstimate | None = None

    def start_lines(self, steps: int) -> list[str]:
        """What the train stage says before loading: preset and why, estimate against the budget, settings, time."""
        estimate = self.estimate.total_bytes
        if self.budget_bytes is None:
            verdict = "not checked: the machine's memory is unknown"
        else:
            share = estimate / self.budget_bytes
            verdict = (f"of {self.budget_bytes / GB:.1f} GB usable" + (": tight" if TIGHT < share <= 1 else "")
                       + (": does not fit, going on because train.force is set" if share > 1 else ""))
        s = self.settings
        chosen = PresetSettings(s.quantize, s.gradient_checkpointing, s.low_ram, s.resolution, s.batch_size,
                                s.cache_limit_gb)
        lines = [f"memory preset {self.preset} ({self.reason})",
                 f"estimated peak {self.estimate.summary()} {verdict}",
                 f"settings: {chosen.describe()}"]
        if self.time is not None:
            t = self.time
            lines.append(f"expected time: about {duration(t.total_seconds(steps))} (encoding ~{duration(t.encode_seconds)}, "
                         f"{steps} steps x ~{t.step_seconds:.2g} s; rough: {t.speed}); the ETA below comes from measured steps")
        return lines

    def measured_line(self, measured: dict) -> str:
        """The measured peaks beside the estimate."""
        mlx_gb, rss_gb = measured["peak_mlx_mb"] / 1024, measured["peak_rss_mb"] / 1024
        ratio = self.estimate.mlx_bytes / GB / mlx_gb if mlx_gb else float("nan")
        return (f"memory: measured peak {mlx_gb:.2f} GB of mlx arrays (warm-up {measured['warmup_peak_mlx_mb'] / 1024:.2f}, "
                f"steps {measured['steps_peak_mlx_mb'] / 1024:.2f}), {rss_gb:.2f} GB resident; estimated "
                f"{self.estimate.mlx_bytes / GB:.2f} GB of mlx arrays (estimate/measured {ratio:.2f}), "
                f"{self.estimate.total_bytes / GB:.2f} GB with the runtime")

    def as_record(self) -> dict:
        """The plan for metrics/train.json."""
        return {"preset": self.preset, "estimate": self.estimate.as_record(),
                "budget_gb": None if self.budget_bytes is None else round(self.budget_bytes / GB, 2),
                "fits": self.fits, "machine": self.machine.as_record(),
                "preset_estimates_gb": {name: round(e.total_bytes / GB, 2) for name, e in self.candidates.items()}}


def assumed_budget(preset: str) -> int:
    """Usable memory assumed for a machine of ``preset``'s size when the real one is unknown (a Mac's 75 %)."""
    return int(nominal_gb(preset) * GB * APPLE_USABLE)


def choose_preset(requested: str, model: BaseModelSpec, candidates: dict[str, MemoryEstimate],
                  machine: MachineMemory) -> tuple[str, str]:
    """(preset, why) for ``train.preset: requested``."""
    if requested != "auto":
        return requested, "set in params.yaml" if requested != "none" else "train.preset: none, params and model defaults only"
    if not machine.known:
        return FALLBACK, (f"auto, but the machine's memory was not detected ({machine.source}): the most conservative "
                          f"preset; set train.preset to your machine's size")
    # Presets named for a machine larger than this one are not considered (a "24 GB" card holds 23.99 GB).
    sized = [name for name in PRESET_NAMES if machine.total_bytes >= SIZE_TOLERANCE * nominal_gb(name) * GB]
    fitting = [name for name in sized if candidates[name].total_bytes <= machine.usable_bytes]
    where = f"this machine: {machine.describe()}"
    if not fitting:
        return PRESET_NAMES[0], f"auto: no preset fits, the smallest is {PRESET_NAMES[0]}; {where}"
    if fits_everywhere(model.name):
        return fitting[-1], f"auto: {model.name} fits every preset, which all keep its own defaults; {where}"
    return fitting[-1], f"auto: the largest preset for this machine's size whose estimate fits; {where}"


def plan_memory(params: Params, model: BaseModelSpec, machine: MachineMemory, estimate: Estimator) -> MemoryPlan:
    """Choose the preset and check the run fits (raises :class:`PipelineError` when it does not and ``train.force`` is off)."""
    requested = params.train.preset
    candidates = {}
    if requested != "none":
        table = presets_for(model.name)
        candidates = {name: estimate(resolve_settings(params, model, table[name], name)) for name in PRESET_NAMES}
    preset, reason = choose_preset(requested, model, candidates, machine)
    if preset == "none":
        settings = resolve_settings(params, model)
        chosen = estimate(settings)
    else:
        settings = resolve_settings(params, model, presets_for(model.name)[preset], preset)
        chosen = candidates[preset]
    if machine.known:
        budget = machine.usable_bytes
    else:
        budget = None if preset == "none" else assumed_budget(preset)
    fits = None if budget is None else chosen.total_bytes <= budget
    plan = MemoryPlan(preset, reason, settings, chosen, machine, budget, fits, candidates)
    if fits is False and not params.train.force:
        raise PipelineError(refusal(plan, params, model))
    return plan


def refusal(plan: MemoryPlan, params: Params, model: BaseModelSpec) -> str:
    """The message of a run that does not fit: estimate, machine, and what would fit."""
    where = (f"this machine can give training {plan.budget_bytes / GB:.1f} GB ({plan.machine.describe()})"
             if plan.machine.known else
             f"a machine of the preset's size is assumed to give training {plan.budget_bytes / GB:.1f} GB "
             f"(the real memory was not detected: {plan.machine.source})")
    lines = [f"training {model.name} with memory preset {plan.preset} would need about {plan.estimate.summary()}, "
             f"but {where}."]
    budget = plan.budget_bytes
    fitting = [name for name in PRESET_NAMES if name in plan.candidates and plan.candidates[name].total_bytes <= budget]
    table = presets_for(model.name) if plan.candidates else {}
    if fitting:
        options = "; ".join(f"{name} ({plan.candidates[name].total_bytes / GB:.1f} GB: {table[name].describe()})"
                            for name in reversed(fitting))
        lines.append(f"Presets that fit: {options}. Set train.preset: auto (or one of these).")
    elif plan.candidates:
        smallest = PRESET_NAMES[0]
        lines.append(f"No preset fits: even the smallest, {smallest}, needs about "
                     f"{plan.candidates[smallest].total_bytes / GB:.1f} GB ({table[smallest].describe()}). "
                     "Train a smaller base model or on a machine with more memory.")
    else:
        lines.append("Set train.preset: auto to let a memory preset choose settings that fit.")
    overrides = preset_overrides(params)
    if overrides:
        shown = ", ".join(f"{name}: {value}" for name, value in overrides.items())
        lines.append(f"Your explicit train values ({shown}) override every preset; set them to null to let the preset decide.")
    lines.append("Or set train.force: true to train anyway (it may swap or be stopped by the system).")
    return " ".join(lines)


def check_quantize(settings: TrainSettings, sizes: ModelSizes) -> None:
    """mflux quantizes every Linear weight in groups of 64 inputs: a model with a narrower layer cannot be quantized."""
    if settings.quantize is None:
        return
    for part in ("transformer", "text_encoder", "vae"):
        blocker = getattr(sizes, part).quantize_blocker
        if blocker:
            raise PipelineError(
                f"train.quantize is {settings.quantize} (memory preset {settings.preset}), but {sizes.name} cannot be "
                f"quantized: mflux packs Linear weights in groups of 64 inputs and its {part} layer {blocker} is not a "
                "multiple of 64. Set train.quantize: 0.")


def optimized_blas() -> bool:
    """Whether mlx runs on an optimized BLAS here (:mod:`charlora.mlx_runtime` loaded one)."""
    from charlora.mlx_runtime import describe

    return describe()["mlx_blas"] is not None


def plan_model_memory(params: Params, model: BaseModelSpec, model_path: str | None, images: list[Path],
                      machine: MachineMemory) -> MemoryPlan:
    """:func:`plan_memory` for a registered base model and its training images, with the expected time."""
    from mflux.models.common.config.model_config import ModelConfig

    from charlora.models.geometry import model_sizes

    sizes = model_sizes(model.name, model.mflux_name, model_path)
    backend = backend_for(machine.kind, ModelConfig.precision.size)
    works: dict[int, Workload] = {}

    def work_at(resolution: int) -> Workload:
        if resolution not in works:
            works[resolution] = workload(images, resolution)
        return works[resolution]

    plan = plan_memory(params, model, machine,
                       lambda settings: estimate_memory(sizes, settings, work_at(settings.resolution), backend))
    check_quantize(plan.settings, sizes)
    time = estimate_time(sizes, plan.settings, work_at(plan.settings.resolution), backend, optimized_blas())
    return replace(plan, time=time)
