"""shots: render a story's shots (only those not in the cache), then write the images, storyboard and manifest.

The same runner serves this machine (:func:`run_local`, the ``shots`` DVC stage, through
:class:`~charlora.shots.render.LocalRenderer`) and Runware (:mod:`charlora.shots.remote`,
``make shots REMOTE=runware``): check the story, plan the jobs, render the missing ones into the
cache (one progress display: shot i of N and s/shot, model loading apart), and only then replace the
output folder's images, so a failure leaves the last good outputs and keeps every shot already
rendered for the next run.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from charlora import layout
from charlora.errors import PipelineError
from charlora.fileio import read_json, sha256_file, utc_now, write_bytes_atomic, write_json
from charlora.lora.safetensors import tensors_sha256
from charlora.models.registry import get_base_model
from charlora.params import Params
from charlora.progress import Progress
from charlora.shots.cache import ShotCache
from charlora.shots.plan import Job, Rendered, Target, plan_jobs
from charlora.shots.references import PreparedReferences
from charlora.shots.story import Story, load_story
from charlora.shots.storyboard import storyboard

STORYBOARD = "storyboard.png"


class Renderer(Protocol):
    """Renders one job (its prepared reference files given); ``describe`` names how, for the manifest."""

    def render(self, job: Job, references: list[Path]) -> Rendered: ...

    def describe(self, job: Job) -> str: ...


@dataclass(frozen=True)
class Outputs:
    """Where one target's shots go: images and storyboard, the cache, the manifest."""

    shots_dir: Path
    cache_dir: Path
    manifest: Path


LOCAL_OUTPUTS = Outputs(layout.SHOTS_DIR, layout.SHOT_CACHE_DIR, layout.SHOTS_MANIFEST_FILE)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def render_missing(jobs: list[Job], target: Target, cache: ShotCache, open_renderer: Callable[[Progress], Renderer],
                   stage: str = "shots") -> set[str]:
    """Render the jobs whose key is not in ``cache`` (text to image first, each key once); returns their keys."""
    todo = list({job.key: job for job in jobs if cache.get(job.key) is None}.values())
    progress = Progress(stage, len(todo), "shot")
    progress.say(f"{len(jobs)} shot(s) in the story: {len(jobs) - len(todo)} from the cache, {len(todo)} to render "
                 f"({target.describe()})")
    if not todo:
        return set()
    renderer = open_renderer(progress)
    with tempfile.TemporaryDirectory(prefix="charlora-references-") as folder:
        prepared = PreparedReferences(Path(folder))
        progress.start()
        for job in sorted(todo, key=lambda job: job.variant != "txt2img"):  # stable: story order within a variant
            files = [prepared.path(ref, size) for ref, size in zip(job.references, job.reference_sizes)]
            png = _png(renderer.render(job, files).image)
            count = len(job.references)
            seconds = progress.advance(f"{job.shot.id} ({job.width}x{job.height}"
                                       + (f", {count} reference(s))" if count else ")"))
            cache.put(job.key, png, {"id": job.shot.id, "prompt": job.prompt, "seconds": round(seconds, 3),
                                     "rendered_on": f"{target.describe()} ({renderer.describe(job)})",
                                     "rendered_at": utc_now()})
    return {job.key for job in todo}


def write_outputs(story_file: Path, jobs: list[Job], target: Target, cache: ShotCache, outputs: Outputs,
                  rendered_now: set[str]) -> dict[str, Any]:
    """Copy every shot from the cache to ``<shots_dir>/<id>.png``, drop the images of shots no longer in the
    story, draw the storyboard and write the manifest (returned)."""
    folder = outputs.shots_dir
    folder.mkdir(parents=True, exist_ok=True)
    ids = {job.shot.id for job in jobs}
    for stale in folder.glob("*.png"):
        if stale.stem not in ids and stale.name != STORYBOARD:
            stale.unlink()
    shots, cells = [], []
    for job in jobs:
        record = cache.get(job.key)
        if record is None:
            raise PipelineError(f"the cache entry of shot '{job.shot.id}' in {cache.folder} vanished while the stage "
                                "ran; run it again.")
        out = folder / f"{job.shot.id}.png"
        write_bytes_atomic(out, cache.image(job.key).read_bytes())
        references = []
        for ref in job.references:
            with Image.open(ref.path) as opened:
                references.append(opened.convert("RGB"))
        with Image.open(out) as image:
            cells.append((job.shot.id, job.prompt, image.convert("RGB"), references))
        shots.append({
            "id": job.shot.id, "file": out.as_posix(), "prompt": job.prompt, "seed": job.seed,
            "width": job.width, "height": job.height, "steps": job.steps, "guidance": job.guidance,
            "lora_scale": job.lora_scale,
            "references": [{"file": ref.file, "sha256": ref.sha256, "conditioned_at": f"{w}x{h}"}
                           for ref, (w, h) in zip(job.references, job.reference_sizes)],
            "rendered_on": record["rendered_on"], "seconds_per_image": record["seconds"],
            "from_cache": job.key not in rendered_now, "cache_key": job.key})
    title = (f"{story_file.as_posix()}: {len(jobs)} shot(s) with {Path(target.adapter['file']).name} "
             f"(sha256 {target.adapter['sha256'][:8]}), {target.describe()}")
    write_bytes_atomic(folder / STORYBOARD, _png(storyboard(cells, title)))
    # Rendered now, each key once (two shots alike in every pixel-deciding way render once).
    measured = list({shot["cache_key"]: shot["seconds_per_image"] for shot in shots if not shot["from_cache"]}.values())
    manifest = {
        "story_file": story_file.as_posix(), "where": target.where, "base_model": target.base_model,
        "adapter": target.adapter, "shot_scale": round(target.sampling.shot_scale, 6),
        "storyboard": (folder / STORYBOARD).as_posix(), "shots_total": len(jobs), "rendered": len(measured),
        "from_cache": sum(shot["from_cache"] for shot in shots),
        "seconds_per_image": round(sum(measured) / len(measured), 3) if measured else None,
        "shots": shots,
    }
    write_json(outputs.manifest, manifest)
    return manifest


def shoot(story: Story, target: Target, open_renderer: Callable[[Progress], Renderer], outputs: Outputs,
          story_file: Path = layout.STORY_FILE) -> dict[str, Any]:
    """Render what the cache lacks, then write the outputs; returns the manifest."""
    jobs = plan_jobs(story, target)
    cache = ShotCache(outputs.cache_dir)
    rendered_now = render_missing(jobs, target, cache, open_renderer)
    return write_outputs(story_file, jobs, target, cache, outputs, rendered_now)


def local_target(params: Params) -> tuple[Target, dict[str, Any], Path]:
    """This machine's target: the training run's base model and the best adapter; also the training config and
    the adapter's path."""
    config_file = layout.TRAINING_DIR / "config.json"
    best = layout.LORA_DIR / f"{params.character.name}-best.safetensors"
    if not best.is_file() or not config_file.is_file():
        raise PipelineError(f"{best} or {config_file} is missing. Run the pipeline first: dvc repro evaluate.")
    from mflux.models.common.config.model_config import ModelConfig

    from charlora.models.loading import model_config

    config = read_json(config_file)
    model_config(config["model"], params.tiny_model, config["model_path"])  # registers it; sets the precision
    precision = str(ModelConfig.precision).rsplit(".", 1)[-1]
    weights = tensors_sha256(best.read_bytes())
    target = Target("local", config["model"], get_base_model(config["model"]).sampling,
                    {"file": best.as_posix(), "sha256": sha256_file(best), "tensors_sha256": weights},
                    f"tensors_sha256:{weights}", f"mflux {version('mflux')}, {precision}")
    return target, config, best


def run_local(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The shots stage: the story on this machine's base model with the best LoRA (``metrics/shots.json``)."""
    from charlora.shots.render import LocalRenderer

    story = load_story(layout.STORY_FILE, params.character.trigger, root)
    target, config, best = local_target(params)
    return shoot(story, target, lambda progress: LocalRenderer(config["model"], config["model_path"], params.tiny_model,
                                                               best, story.lora_scale, progress), LOCAL_OUTPUTS)
