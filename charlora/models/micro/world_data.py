"""World pictures as training tensors for the micro model's pretraining (torch, CPU)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from charlora.world import Spec, caption, iter_specs, render

# Picture sizes of the pretraining world (width, height), max side 128: square, landscape and portrait,
# including a 9:16-like vertical frame for story shots. Every side is a multiple of 16 (mflux's constraint).
BUCKETS: tuple[tuple[int, int], ...] = ((128, 128), (128, 96), (96, 128), (128, 80), (80, 128), (112, 64), (64, 112))


def to_tensor(image) -> np.ndarray:
    """A PIL RGB image as float32 CHW in [-1, 1] (what the FLUX.2 VAE takes)."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


def world_drawings(seed: int, renders: int = 1,
                   buckets: tuple[tuple[int, int], ...] = BUCKETS) -> Iterator[tuple[Spec, str, tuple[int, int]]]:
    """Endless (spec to draw, caption, size) of world pictures at seeded sizes from ``buckets``.

    Each caption comes ``renders`` times in a row, each time at another size and with other scene
    details (trees, stars, clouds): more pictures per caption, for the same cost of embedding captions.
    """
    rng = random.Random(seed)
    for spec in iter_specs(seed):
        text = caption(spec)
        for copy in range(renders):
            size = buckets[rng.randrange(len(buckets))]
            yield (spec if copy == 0 else replace(spec, seed=rng.randrange(1 << 30))), text, size


def world_items(seed: int, renders: int = 1,
                buckets: tuple[tuple[int, int], ...] = BUCKETS) -> Iterator[tuple[np.ndarray, str, tuple[int, int]]]:
    """Endless (image CHW, caption, size) of the pictures :func:`world_drawings` describes."""
    for spec, text, size in world_drawings(seed, renders, buckets):
        yield to_tensor(render(spec, size)), text, size


def creature_share(spec: Spec, size: tuple[int, int], block: int = 16) -> np.ndarray:
    """The share of each ``block`` x ``block`` pixel block covered by the creature, row by row: (H/16 * W/16,).

    16 pixels is one token of the FLUX.2 transformer (the VAE's 8x, then 2x2 patches), so this is the
    creature's share of each image token.
    """
    alpha = np.asarray(render(spec, size, transparent=True).getchannel("A"), dtype=np.float32) / 255.0
    height, width = alpha.shape
    return alpha.reshape(height // block, block, width // block, block).mean(axis=(1, 3)).reshape(-1)


def random_crops(seed: int, crop: int, batch: int) -> Iterator[np.ndarray]:
    """Endless batches (B, 3, crop, crop) of random crops of world pictures: cheap VAE training data."""
    rng = random.Random(seed)
    items = world_items(seed)
    while True:
        crops = []
        for _ in range(batch):
            image, _, (width, height) = next(items)
            top, left = rng.randrange(height - crop + 1), rng.randrange(width - crop + 1)
            crops.append(image[:, top : top + crop, left : left + crop])
        yield np.stack(crops)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of 8-bit pictures given as arrays in [-1, 1]."""
    a = np.clip(np.rint((reference + 1) * 127.5), 0, 255)
    b = np.clip(np.rint((decoded + 1) * 127.5), 0, 255)
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
