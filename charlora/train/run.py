"""train: mflux LoRA training on a FLUX.2 Klein base model, from ``params.yaml``, resumable.

The stage writes mflux's own training config (JSON) from the params, validates it against the
model before anything heavy starts, and runs ``TrainingRunner.train``; a run interrupted with
unchanged params and data resumes (:mod:`charlora.train.checkpoints`). One progress display: the
warm-up (loading the model, encoding the images) is timed apart from the steps, whose s/step and
ETA come from measured steps only; mflux's own bar and banners are silenced.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from charlora import mlx_runtime
from charlora.errors import PipelineError
from charlora.fileio import sha256_json, sha256_tree, write_json, write_text_atomic
from charlora.machine import GB, MachineMemory, detect_memory
from charlora.models.loading import model_config
from charlora.models.registry import TINY
from charlora.params import Params
from charlora.progress import Progress, duration, say, silenced
from charlora.train.checkpoints import RUN_SUBDIR, checkpoint_step, plan_run
from charlora.train.curves import log_curves
from charlora.train.guard import MemoryGuard
from charlora.train.hooks import observe_steps, observe_warmup, resumed_at_trained_scale
from charlora.train.mflux_config import learning_rate_line, mflux_config
from charlora.train.preflight import plan_model_memory
from charlora.train.settings import base_model_for, check_dataset, check_model_path


class LossLog:
    """``loss.jsonl``: one line per step, kept up to the resumed step when a run resumes."""

    def __init__(self, path: Path, first_step: int) -> None:
        self.path, self.step = path, first_step
        kept = []
        if path.exists() and first_step > 0:
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line and json.loads(line)["step"] <= first_step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def append(self, loss: float) -> None:
        """Record the next step's loss."""
        self.step += 1
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": self.step, "loss": loss}) + "\n")


def read_losses(loss_file: Path) -> list[dict]:
    """The rows of ``loss.jsonl``."""
    return [json.loads(line) for line in loss_file.read_text(encoding="utf-8").splitlines() if line]


def fingerprint(config: dict, data_dir: Path, params: Params) -> dict:
    """What decides a run's result: the mflux config, the training data and the base model geometry."""
    return {
        "config_sha256": sha256_json(config),
        "data_sha256": sha256_tree(data_dir),
        "base_model": params.base_model.name,
        "tiny_model_sha256": sha256_json(asdict(params.tiny_model)) if params.base_model.name == TINY else None,
    }


def train(params: Params, train_dir: Path, training_dir: Path, live_dir: Path, embedded_dir: Path | None = None,
          machine: MachineMemory | None = None) -> dict:
    """Validate, choose the memory preset, write the mflux config, train (or resume) and return the train metrics.

    ``embedded_dir``: where the embedded base model is (default: its folder in the registry).
    ``machine``: the memory to plan for (default: this machine's, :func:`charlora.machine.detect_memory`).
    """
    model = base_model_for(params)
    images = check_dataset(train_dir)
    model_path = check_model_path(params, embedded_dir)
    model_config(model.name, params.tiny_model, model_path)  # registers the embedded models with mflux
    memory = plan_model_memory(params, model, model_path, images, machine or detect_memory())
    settings = memory.settings
    config_path = training_dir / "config.json"
    run_dir = training_dir / RUN_SUBDIR
    total = -(-len(images) // settings.batch_size) * settings.epochs
    config = mflux_config(settings, model, model_path, train_dir, config_path, run_dir, total)
    facts = fingerprint(config, train_dir, params)
    plan = plan_run(training_dir, sha256_json(facts), total, report=lambda message: say("train", message))
    say("train", plan.reason)
    if plan.resume_from is None:
        shutil.rmtree(training_dir, ignore_errors=True)
    training_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    write_json(training_dir / "fingerprint.json", {"fingerprint": sha256_json(facts), **facts})

    from mflux.models.common.training.runner import TrainingRunner

    first = checkpoint_step(plan.resume_from) if plan.resume_from else 0
    losses = LossLog(training_dir / "loss.jsonl", first)
    encoding = Progress("train", len(images), "encoding image", "image")
    steps = Progress("train", total, "step", done=first)
    say("train", f"{model.name}, {len(images)} images, {total} steps at {settings.resolution} px, LoRA rank {settings.rank}, "
                 f"{learning_rate_line(settings)}")
    for line in memory.start_lines(total - first):
        say("train", line)
    say("train", f"warm-up: mflux loads the model and encodes the {len(images)} images before the first step ...")
    guard = MemoryGuard(memory, force=params.train.force)
    started = time.perf_counter()

    def encoded(seconds: float) -> None:
        encoding.advance(seconds=seconds)

    def loop_started() -> None:
        warmup = time.perf_counter() - started
        encoded_s = sum(encoding.durations)
        say("train", f"warm-up done in {duration(warmup)}: encoding {encoding.done} images {duration(encoded_s)}, "
                     f"loading and setup {duration(warmup - encoded_s)}; steps start now")
        guard.warmup_done()
        steps.start()

    def stepped(loss: float) -> None:
        losses.append(loss)
        steps.advance(f"loss {loss:.4f}")
        guard.check()

    guard.start()
    try:
        with silenced(), observe_warmup(encoded, loop_started), observe_steps(stepped), \
                resumed_at_trained_scale(settings.alpha):
            if plan.resume_from:
                TrainingRunner.train(config_path=None, resume_path=str(plan.resume_from))
            else:
                TrainingRunner.train(config_path=str(config_path), resume_path=None)
    except ValueError as error:
        # mflux reports config problems as ValueError; they are the user's to fix.
        raise PipelineError(f"mflux refused the training config {config_path}: {error}") from error
    wall = time.perf_counter() - started
    rows = read_losses(training_dir / "loss.jsonl")
    log_curves(rows, live_dir)
    import mlx.core as mx

    measured = guard.measured()
    say("train", memory.measured_line(measured))
    return {
        "base_model": model.name,
        "steps": total,
        "resumed_from_step": first,
        "final_loss": rows[-1]["loss"] if rows else None,
        # The first step includes mlx's graph building; it is left out when there are others.
        "seconds_per_step": round(steps.seconds_per_item(skip_first=True), 4),
        "encode_seconds": round(sum(encoding.durations), 2),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": measured["peak_rss_mb"],
        "peak_mlx_memory_mb": measured["peak_mlx_mb"],
        **mlx_runtime.describe(),
        "preset": memory.preset,
        "estimated_peak_gb": round(memory.estimate.total_bytes / GB, 3),
        "memory": {**memory.as_record(), "measured": measured},
        "settings": asdict(settings),
    }
