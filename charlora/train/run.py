"""train: mflux LoRA training on a FLUX.2 Klein base model, from ``params.yaml``, resumable.

The stage writes mflux's own training config (JSON) from the params, validates it against the
model before anything heavy starts, and runs ``TrainingRunner.train``. Its folder
(``models/training``) persists between runs: when a run was interrupted and neither params nor
data changed (same fingerprint), the next run resumes from the newest good checkpoint; when
something changed, it starts fresh and says so.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from charlora.base_models import TINY, BaseModelSpec, get_base_model
from charlora.errors import PipelineError
from charlora.fileio import read_json, sha256_json, sha256_tree, write_json, write_text_atomic
from charlora.images import IMAGE_SUFFIXES
from charlora.params import Params

RUN_SUBDIR = "run"  # mflux's checkpoint.output_path inside the training folder


@dataclass(frozen=True)
class TrainSettings:
    """The effective training values: params with ``null`` replaced by the model's defaults."""

    seed: int
    resolution: int
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    steps: int
    guidance: float
    timestep_low: int
    timestep_high: int
    quantize: int | None
    low_ram: bool
    checkpoint_every: int
    preview_every: int
    preview_resolution: int
    rank: int
    alpha: float | None
    double_targets: tuple[str, ...]
    single_targets: tuple[str, ...]
    double_blocks: tuple[int, int]
    single_blocks: tuple[int, int]


def base_model_for(params: Params) -> BaseModelSpec:
    tiny = params.tiny_model
    return get_base_model(params.base_model.name, (tiny.num_layers, tiny.num_single_layers))


def resolve_settings(params: Params, model: BaseModelSpec) -> TrainSettings:
    """Fill ``null`` train params from the model defaults and check them against the model.

    Raises :class:`PipelineError` naming the param when a value cannot work with this model.
    """
    train, lora, defaults = params.train, params.train.lora, model.defaults

    def pick(value, default):
        return default if value is None else value

    steps = pick(train.steps, defaults.steps)
    low = pick(train.timestep_low, defaults.timestep_low if train.steps is None else 0)
    high = pick(train.timestep_high, defaults.timestep_high if train.steps is None else steps)
    if high > steps:
        raise PipelineError(f"params.yaml: 'train.timestep_high' is {high}; it must be at most train.steps ({steps}).")
    if low >= high:
        raise PipelineError(f"params.yaml: 'train.timestep_low' ({low}) must be below train.timestep_high ({high}).")
    # Each target is one of charlora.flux2_layers' block layers (checked when params.yaml is read).
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
    return TrainSettings(
        seed=train.seed, resolution=pick(train.resolution, defaults.resolution), epochs=pick(train.epochs, defaults.epochs),
        batch_size=train.batch_size, learning_rate=train.learning_rate, optimizer=train.optimizer, steps=steps,
        guidance=pick(train.guidance, defaults.guidance), timestep_low=low, timestep_high=high, quantize=train.quantize,
        low_ram=pick(train.low_ram, defaults.low_ram), checkpoint_every=pick(train.checkpoint_every, defaults.checkpoint_every),
        preview_every=pick(train.preview_every, defaults.preview_every),
        preview_resolution=pick(train.preview_resolution, defaults.preview_resolution),
        rank=lora.rank, alpha=lora.alpha, double_targets=tuple(lora.double_targets),
        single_targets=tuple(lora.single_targets), double_blocks=blocks["double_blocks"],
        single_blocks=blocks["single_blocks"],
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


def check_model_path(params: Params, tiny_model_dir: Path) -> str | None:
    """The local model folder to load, or None to let mflux download ``base_model.name``.

    ``base_model.path: null`` means the tiny model's folder for the tiny model (built by the
    base_model stage) and a download for the real ones, so switching models is one param.
    """
    path = params.base_model.path
    if path is None and params.base_model.name == TINY:
        path = str(tiny_model_dir)
    if path is None:
        return None
    if not Path(path).is_dir() or not (Path(path) / "transformer").is_dir():
        hint = ("Run `dvc repro base_model` to build it" if params.base_model.name == TINY and params.base_model.path is None
                else "Fix the path, or set it to null to let mflux download base_model.name")
        raise PipelineError(
            f"base_model.path '{path}' is not a FLUX.2 Klein model folder (it needs transformer/, text_encoder/, "
            f"vae/ and tokenizer/). {hint}.")
    return path


def lora_targets(settings: TrainSettings) -> list[dict]:
    """mflux ``lora_layers.targets`` entries for the double- and single-stream block ranges."""
    targets = []
    for prefix, names, (start, end) in (("transformer_blocks", settings.double_targets, settings.double_blocks),
                                        ("single_transformer_blocks", settings.single_targets, settings.single_blocks)):
        for name in names:
            target = {"module_path": f"{prefix}.{{block}}.{name}", "blocks": {"start": start, "end": end},
                      "rank": settings.rank}
            if settings.alpha is not None:
                target["alpha"] = settings.alpha
            targets.append(target)
    return targets


def mflux_config(settings: TrainSettings, model: BaseModelSpec, model_path: str | None, data_dir: Path,
                 config_path: Path, run_dir: Path) -> dict:
    """mflux's training config (``mflux-train --config`` schema) for these settings.

    ``data`` is relative to the config file, as mflux resolves it; ``output_path`` to the project root.
    """
    config = {
        "model": model.mflux_name,
        "model_path": model_path,
        "data": os.path.relpath(data_dir, config_path.parent),
        "seed": settings.seed,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "quantize": settings.quantize,
        "max_resolution": settings.resolution,
        "low_ram": settings.low_ram,
        "training_loop": {"num_epochs": settings.epochs, "batch_size": settings.batch_size,
                          "timestep_low": settings.timestep_low, "timestep_high": settings.timestep_high},
        "optimizer": {"name": settings.optimizer, "learning_rate": settings.learning_rate},
        "checkpoint": {"save_frequency": settings.checkpoint_every, "output_path": run_dir.as_posix()},
        "lora_layers": {"targets": lora_targets(settings)},
    }
    if settings.preview_every > 0:
        config["monitoring"] = {"preview_width": settings.preview_resolution, "preview_height": settings.preview_resolution,
                                "plot_frequency": settings.preview_every, "generate_image_frequency": settings.preview_every}
    return config


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("_", 1)[0])


def good_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint zips, oldest first. A zip cut short by a kill is removed with a message."""
    found = []
    for path in sorted((run_dir / "checkpoints").glob("*_checkpoint.zip")):
        try:
            with zipfile.ZipFile(path) as archive:
                ok = "checkpoint.json" in archive.namelist() and archive.testzip() is None
        except (zipfile.BadZipFile, OSError):
            ok = False
        if ok:
            found.append(path)
        else:
            print(f"train: removing incomplete checkpoint {path} (the run was stopped while writing it)", flush=True)
            path.unlink()
    return found


@dataclass(frozen=True)
class RunPlan:
    resume_from: Path | None
    reason: str


def plan_run(training_dir: Path, fingerprint: str, total_steps: int) -> RunPlan:
    """Resume from the newest good checkpoint if the last run had this fingerprint and did not finish.

    A finished run that is run again (``dvc repro -f``, or its outputs were edited) starts fresh.
    """
    run_dir = training_dir / RUN_SUBDIR
    previous = training_dir / "fingerprint.json"
    if not run_dir.exists():
        return RunPlan(None, "no earlier run: starting fresh")
    if not previous.exists() or read_json(previous).get("fingerprint") != fingerprint:
        return RunPlan(None, "params or training data changed since the last run: starting fresh")
    checkpoints = good_checkpoints(run_dir)
    if not checkpoints:
        return RunPlan(None, "the last run left no checkpoint: starting fresh")
    if checkpoint_step(checkpoints[-1]) >= total_steps:
        return RunPlan(None, "the last run with these params and data had finished: training again from the start")
    return RunPlan(checkpoints[-1], f"same params and data as the interrupted run: resuming from {checkpoints[-1].name} "
                                    f"(step {checkpoint_step(checkpoints[-1])})")


@contextmanager
def observe_steps(callback: Callable[[float], None]) -> Iterator[None]:
    """Call ``callback(loss)`` once per training step while mflux trains.

    mflux 0.24 records per-step losses only when preview monitoring is on, and previews cost
    minutes; its trainer does check each step's (already evaluated) loss with
    ``TrainingTrainer._step_is_finite``, so that check is where we listen. Pinned mflux version:
    if the hook is gone, training still runs, without per-step progress.
    """
    from mflux.models.common.training.trainer import TrainingTrainer

    original = TrainingTrainer.__dict__.get("_step_is_finite")
    if original is None:
        yield
        return
    check = original.__func__
    state = {"stepping": False, "interrupted": False}

    def listening(loss):
        finite = check(loss)
        state["stepping"] = True
        callback(float(loss) if finite else float("nan"))
        if state["interrupted"]:
            raise KeyboardInterrupt
        return finite

    # While steps run, Ctrl-C stops at the next step boundary, here in our code: a KeyboardInterrupt
    # raised at a random point inside mlx/mflux can land in a finalizer, where Python only prints it
    # and training goes on. Before the first step (encoding the images), or on a second Ctrl-C, it stops at once.
    def on_sigint(signum, frame):
        if state["interrupted"] or not state["stepping"]:
            raise KeyboardInterrupt
        state["interrupted"] = True

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    TrainingTrainer._step_is_finite = staticmethod(listening)
    try:
        yield
    finally:
        TrainingTrainer._step_is_finite = original
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def resumed_at_trained_scale(alpha: float | None) -> Iterator[None]:
    """Resume LoRA layers at the scale they were trained at (alpha / rank), not 1.

    mflux 0.24 trains each layer at scale alpha / rank but saves the checkpoint's adapter without
    alpha, and its resume loads that adapter at scale 1: with ``train.lora.alpha`` set, the LoRA would
    jump by rank / alpha at every resume and the run would not be the run that was asked for. After
    mflux has loaded the adapter, the training layers get their scale back. Pinned mflux version: the
    hook is the training adapter's ``load_lora_adapter``, which mflux calls only to resume.
    """
    from mflux.models.common.lora.layer.linear_lora_layer import LoRALinear
    from mflux.models.flux2.training_adapter.flux2_base_training_adapter import Flux2BaseTrainingAdapter

    original = Flux2BaseTrainingAdapter.__dict__["load_lora_adapter"]

    def loading(self, *, path):
        original(self, path=path)
        for _, module in self.transformer().named_modules():
            if isinstance(module, LoRALinear) and getattr(module, "_mflux_lora_role", None) == "train":
                module.scale = alpha / module.lora_A.shape[1]

    if alpha is not None:
        Flux2BaseTrainingAdapter.load_lora_adapter = loading
    try:
        yield
    finally:
        Flux2BaseTrainingAdapter.load_lora_adapter = original


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class ProgressLog:
    """Per-step progress line (step/total, loss, s/step, ETA) and a loss log that survives a resume."""

    def __init__(self, loss_file: Path, first_step: int, total_steps: int):
        self.loss_file = loss_file
        self.step = first_step
        self.total = total_steps
        self.started = time.perf_counter()
        self.last = self.started
        self.step_times: list[float] = []
        kept = []
        if loss_file.exists() and first_step > 0:
            kept = [line for line in loss_file.read_text(encoding="utf-8").splitlines()
                    if line and json.loads(line)["step"] <= first_step]
        write_text_atomic(loss_file, "".join(line + "\n" for line in kept))

    def __call__(self, loss: float) -> None:
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        self.last = now
        self.step += 1
        with open(self.loss_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": self.step, "loss": loss}) + "\n")
        per_step = sum(self.step_times[-10:]) / len(self.step_times[-10:])
        eta = per_step * (self.total - self.step)
        print(f"train: step {self.step}/{self.total}  loss {loss:.4f}  {per_step:.2f} s/step  ETA {eta:.0f}s", flush=True)

    def seconds_per_step(self) -> float:
        # The first step includes compilation and warm-up; leave it out when there are others.
        times = self.step_times[1:] or self.step_times
        return sum(times) / len(times) if times else 0.0


def read_losses(loss_file: Path) -> list[dict]:
    return [json.loads(line) for line in loss_file.read_text(encoding="utf-8").splitlines() if line]


def log_curves(rows: list[dict], live_dir: Path) -> None:
    """Write per-step curves with dvclive so `dvc plots show` draws them.

    Each row has a "step" and any metric values; a metric missing from a row is not logged at that step.
    """
    from dvclive import Live

    shutil.rmtree(live_dir, ignore_errors=True)
    with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for row in rows:
            live.step = row["step"]
            for metric, value in row.items():
                if metric != "step":
                    live.log_metric(metric, value)


def fingerprint(config: dict, data_dir: Path, params: Params) -> dict:
    """What decides a run's result: the mflux config, the training data and the base model geometry."""
    return {
        "config_sha256": sha256_json(config),
        "data_sha256": sha256_tree(data_dir),
        "base_model": params.base_model.name,
        "tiny_model_sha256": sha256_json(asdict(params.tiny_model)) if params.base_model.name == TINY else None,
    }


def train(params: Params, train_dir: Path, training_dir: Path, live_dir: Path, tiny_model_dir: Path) -> dict:
    """Validate, write the mflux config, train (or resume) and return the train metrics."""
    model = base_model_for(params)
    settings = resolve_settings(params, model)
    images = check_dataset(train_dir)
    model_path = check_model_path(params, tiny_model_dir)
    config_path = training_dir / "config.json"
    run_dir = training_dir / RUN_SUBDIR
    config = mflux_config(settings, model, model_path, train_dir, config_path, run_dir)
    facts = fingerprint(config, train_dir, params)
    total = -(-len(images) // settings.batch_size) * settings.epochs
    plan = plan_run(training_dir, sha256_json(facts), total)
    print(f"train: {plan.reason}", flush=True)
    if plan.resume_from is None:
        shutil.rmtree(training_dir, ignore_errors=True)
    training_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    write_json(training_dir / "fingerprint.json", {"fingerprint": sha256_json(facts), **facts})

    if model.name == TINY:
        from charlora.tiny_model import register_tiny_model

        register_tiny_model(params.tiny_model)
    from mflux.models.common.training.runner import TrainingRunner

    first = checkpoint_step(plan.resume_from) if plan.resume_from else 0
    progress = ProgressLog(training_dir / "loss.jsonl", first, total)
    print(f"train: {model.name}, {len(images)} images, {total} steps at {settings.resolution} px, "
          f"LoRA rank {settings.rank}", flush=True)
    started = time.perf_counter()
    try:
        with observe_steps(progress), resumed_at_trained_scale(settings.alpha):
            if plan.resume_from:
                TrainingRunner.train(config_path=None, resume_path=str(plan.resume_from))
            else:
                TrainingRunner.train(config_path=str(config_path), resume_path=None)
    except ValueError as error:
        # mflux reports config problems as ValueError; they are the user's to fix.
        raise PipelineError(f"mflux refused the training config {config_path}: {error}") from error
    wall = time.perf_counter() - started
    losses = read_losses(training_dir / "loss.jsonl")
    log_curves(losses, live_dir)
    import mlx.core as mx

    return {
        "base_model": model.name,
        "steps": total,
        "resumed_from_step": first,
        "final_loss": losses[-1]["loss"] if losses else None,
        "seconds_per_step": round(progress.seconds_per_step(), 4),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_mlx_memory_mb": round(mx.get_peak_memory() / (1 << 20), 1),
        "mlx_device": str(mx.default_device()),
        "settings": asdict(settings),
    }
