"""prior: prior preservation, the base model's own pictures for the training captions without the trigger word.

DreamBooth's remedy for a LoRA that draws its character everywhere: train on the character's
pictures *and* on what the base model itself draws for the same captions without the trigger
(``"brmbl, sitting in the snow"`` next to the base model's picture for ``"sitting in the snow"``).
The only way to lower the loss on both is to tie the character to the trigger word: prompts
without it keep what the base model did. Those pictures go into the training folder beside the
character's (merge), ``prior.per_image`` per training picture, at each picture's aspect ratio.

Each picture is cached by the base model's identity, its caption, seed, size and sampling
settings (``data/cache/prior``, kept between runs), so adding a picture generates only its priors.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charlora.fileio import read_json, sha256_json
from charlora.models.registry import BaseModelSpec
from charlora.params import Params, PriorParams


PRIOR_SUFFIX = re.compile(r"_prior\d+$")  # char_003_prior1: a prior picture beside char_003 in the training folder


def is_prior(path: Path) -> bool:
    """Whether a training-folder file is a prior picture (not one of the character's own)."""
    return bool(PRIOR_SUFFIX.search(path.stem))


@dataclass(frozen=True)
class PriorPicture:
    """One picture to generate: for which training picture, from which caption, at which size and seed."""

    source: str  # the processed picture's name (char_003)
    name: str  # char_003_prior1
    caption: str  # without the trigger word
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class PriorSettings:
    """The prior stage's effective values: ``prior`` params with ``null`` ones from the base model's defaults."""

    per_image: int
    steps: int
    guidance: float
    resolution: int  # long side of the pictures: the training resolution
    workers: int  # processes that draw the pictures


def resolve_prior(params: Params, model: BaseModelSpec) -> PriorSettings:
    """``prior`` params resolved for ``model`` (sampling like evaluate's defaults, size like training's)."""
    from charlora.train.settings import resolve_settings

    prior, sampling = params.prior, model.sampling
    return PriorSettings(sampling.prior_per_image if prior.per_image is None else prior.per_image,
                         sampling.steps if prior.steps is None else prior.steps,
                         sampling.guidance if prior.guidance is None else prior.guidance,
                         resolve_settings(params, model).resolution,
                         default_workers(model) if prior.workers is None else prior.workers)


def default_workers(model: BaseModelSpec) -> int:
    """Processes for the prior pictures when ``prior.workers`` is null: every core for an embedded model on a CPU
    (mlx there keeps to about one core per process, and a micro model costs little memory per copy); one
    elsewhere (Metal or CUDA is shared by one process better, and a real model would be loaded twice)."""
    import mlx.core as mx

    if model.local_dir is None or mx.default_device() != mx.cpu:
        return 1
    return os.cpu_count() or 1


def without_trigger(caption: str, trigger: str) -> str:
    """The caption with the trigger word taken out (and the punctuation around it tidied)."""
    text = re.sub(rf"(?<![\w-]){re.escape(trigger)}(?![\w-])", " ", caption)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,(\s*,)*\s*", ", ", text)  # "a , b" and "a, , b" -> "a, b"
    return text.strip(" ,")


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The picture's aspect ratio at ``max_side`` on its long side, both sides multiples of 16 (at least 16)."""
    scale = max_side / max(width, height)
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


def plan_priors(processed_dir: Path, captions_dir: Path, trigger: str, params: PriorParams, per_image: int,
                max_side: int) -> list[PriorPicture]:
    """``per_image`` pictures for each processed picture, in manifest order, each with its own seed."""
    pictures = []
    for index, entry in enumerate(read_json(processed_dir / "manifest.json")):
        caption = without_trigger((captions_dir / f"{entry['name']}.txt").read_text(encoding="utf-8").strip(), trigger)
        width, height = fit_size(entry["width"], entry["height"], max_side)
        for copy in range(per_image):
            pictures.append(PriorPicture(entry["name"], f"{entry['name']}_prior{copy + 1}", caption,
                                         params.seed + 1000 * index + copy, width, height))
    return pictures


def cache_key(picture: PriorPicture, model_identity: str, steps: int, guidance: float) -> str:
    """What decides the pixels: the base model, the caption, the seed, the size and the sampling settings."""
    return sha256_json({"model": model_identity, "caption": picture.caption, "seed": picture.seed,
                        "size": [picture.width, picture.height], "steps": steps, "guidance": guidance})


def generate_priors(pictures: list[PriorPicture], out_dir: Path, cache_dir: Path, model_identity: str, steps: int,
                    guidance: float, load_model: Callable[[], object], workers: int = 1) -> dict:
    """Write ``<name>.png`` and ``<name>.txt`` for every picture into ``out_dir``; generate only what the cache lacks.

    ``load_model()`` (an mflux FLUX.2 Klein) is called once per process, and only when something has to be
    generated. ``workers`` above 1 draws the pictures in that many processes (each loads the model: pass a
    picklable ``load_model``, such as a ``functools.partial``); every picture has its own seed, so the pixels
    are the same whichever process draws them.
    """
    from charlora.progress import Progress

    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = {p.name: cache_dir / f"{cache_key(p, model_identity, steps, guidance)}.png" for p in pictures}
    missing = [p for p in pictures if not cached[p.name].is_file()]
    if missing:
        progress = Progress("prior", len(missing), "picture")
        workers = max(1, min(workers, len(missing)))
        if workers == 1:
            with progress.warmup(f"loading the base model for {len(missing)} prior picture(s)"):
                _load_worker_model(load_model)
            progress.start()
            for picture in missing:
                _draw(picture, cached[picture.name], steps, guidance)
                progress.advance(f"{picture.name}: {picture.caption}")
            _WORKER_MODEL.clear()  # this process goes on without the model
        else:
            _draw_in_processes(missing, cached, steps, guidance, load_model, workers, progress)
    for picture in pictures:
        shutil.copyfile(cached[picture.name], out_dir / f"{picture.name}.png")
        (out_dir / f"{picture.name}.txt").write_text(picture.caption + "\n", encoding="utf-8")
    return {"pictures": len(pictures), "generated": len(missing), "cached": len(pictures) - len(missing),
            "steps": steps, "guidance": guidance, "sources": sorted({p.source for p in pictures})}


def _draw_in_processes(missing: list[PriorPicture], cached: dict[str, Path], steps: int, guidance: float,
                       load_model: Callable[[], object], workers: int, progress) -> None:
    """The pictures drawn by ``workers`` processes, each with its own model; one progress line per picture."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker (mlx and a forked parent's threads do not mix).
    context = multiprocessing.get_context("spawn")
    with progress.warmup(f"loading the base model in {workers} processes for {len(missing)} prior picture(s)"):
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_load_worker_model, initargs=(load_model,))
        ready = [pool.submit(_ready) for _ in range(workers)]
        for future in ready:
            future.result()
    with pool:
        progress.start()
        futures = {pool.submit(_draw, picture, cached[picture.name], steps, guidance): picture for picture in missing}
        for future in as_completed(futures):
            future.result()
            picture = futures[future]
            progress.advance(f"{picture.name}: {picture.caption}")


_WORKER_MODEL: list[object] = []  # the model of this process, loaded once by _load_worker_model


def _load_worker_model(load_model: Callable[[], object]) -> None:
    _WORKER_MODEL[:] = [load_model()]


def _ready() -> bool:
    """A task that returns once its worker has loaded the model (the pool's initializer ran)."""
    return bool(_WORKER_MODEL)


def _draw(picture: PriorPicture, target: Path, steps: int, guidance: float) -> None:
    """One picture into the cache, by the model of this process."""
    from charlora.progress import silenced

    with silenced():  # mflux's per-image bar: the one display is the line per picture
        image = _WORKER_MODEL[0].generate_image(seed=picture.seed, prompt=picture.caption, num_inference_steps=steps,
                                                width=picture.width, height=picture.height, guidance=guidance).image
    partial = target.with_suffix(".part.png")
    image.save(partial)
    partial.replace(target)  # a stopped run never leaves half a picture in the cache
