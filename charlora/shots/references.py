"""Reference images as the model sees them: upright, RGB, at the size the plan gives (aspect kept, centre-cropped).

The same prepared PNG is what mflux's edit variant encodes on this machine and what is uploaded to
Runware, so both condition on the same pixels (at their own model's scale).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from charlora.data.images import to_rgb
from charlora.shots.story import Reference


def prepare(reference: Reference, size: tuple[int, int]) -> Image.Image:
    """``reference`` turned upright (EXIF), converted to RGB, scaled to cover ``size`` and centre-cropped to it."""
    with Image.open(reference.path) as opened:
        image = to_rgb(ImageOps.exif_transpose(opened))
    width, height = size
    scale = max(width / image.width, height / image.height)
    covered = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    left, top = (covered.width - width) // 2, (covered.height - height) // 2
    return covered.crop((left, top, left + width, top + height))


class PreparedReferences:
    """Prepared reference files in ``folder``, each written once per (sha256, size) and reused by every shot."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._paths: dict[tuple[str, tuple[int, int]], Path] = {}

    def path(self, reference: Reference, size: tuple[int, int]) -> Path:
        """The prepared PNG of ``reference`` at ``size`` (written on first use)."""
        key = (reference.sha256, size)
        if key not in self._paths:
            out = self.folder / f"{reference.sha256[:16]}_{size[0]}x{size[1]}.png"
            self.folder.mkdir(parents=True, exist_ok=True)
            prepare(reference, size).save(out)
            self._paths[key] = out
        return self._paths[key]
