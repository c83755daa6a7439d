"""Rendering a spec at any size: scene, layout of the creature in the frame, supersampling.

Everything is drawn at an integer multiple of the output size (4x for small images, 2x for
large ones) and reduced (a 2x box reduction, then LANCZOS: Pillow's ``reducing_gap``), so edges
are smooth. The same spec and size give
the same pixels on every run: no global random state, no fonts, no clock.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from charlora.world.attributes import Spec
from charlora.world.creature import draw_creature, extent
from charlora.world.scenes import FOOT_LINE, draw_scene
from charlora.world.shapes import box

SIZE_FRACTION: dict[str, float] = {"small": 0.4, "medium": 0.56, "large": 0.78}
"""Creature unit (about its height) as a fraction of the shorter side of the frame."""
MARGIN = 0.03
"""Least gap between the creature and the frame's side edges, as a fraction of the shorter side."""


def supersampling(size: tuple[int, int]) -> int:
    """The drawing scale for an output size: 4 up to 384 px on the shorter side, else 2."""
    return 4 if min(size) <= 384 else 2


def layout(spec: Spec, size: tuple[int, int]) -> tuple[float, float, float]:
    """Creature unit, centre x and foot line y (pixels of a frame of ``size``)."""
    width, height = size
    short = min(width, height)
    unit = SIZE_FRACTION[spec.size] * short
    left, right, top = extent(spec.creature, spec.pose)
    foot_y = height - FOOT_LINE * short
    if foot_y - top * unit < MARGIN * short:  # a tall creature in a flat frame: shrink it to fit
        unit = (foot_y - MARGIN * short) / top
    if (left + right) * unit > width - 2 * MARGIN * short:  # a wide creature in a narrow frame: shrink it too
        unit = (width - 2 * MARGIN * short) / (left + right)
    left, right = left * unit, right * unit
    lo, hi = left + MARGIN * short, width - right - MARGIN * short
    if lo >= hi:
        return unit, (lo + hi) / 2, foot_y
    return unit, lo + (hi - lo) * {"left": 0.0, "centre": 0.5, "right": 1.0}[spec.position], foot_y


def render(spec: Spec, size: tuple[int, int] = (128, 128), transparent: bool = False) -> Image.Image:
    """Draw ``spec`` as an RGB image of ``size`` (width, height); RGBA with no scene if ``transparent``."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {size}")
    scale = supersampling(size)
    big = (width * scale, height * scale)
    unit, cx, foot_y = (v * scale for v in layout(spec, size))
    if transparent:
        canvas = Image.new("RGBA", big, (0, 0, 0, 0))
        ink = (60, 60, 70)
    else:
        canvas, style = draw_scene(spec.scene, big, spec.seed)
        ink = style.ink
        shade = ImageDraw.Draw(canvas, "RGBA")
        rx = unit * 0.3 * (0.75 if spec.pose == "jumping" else 1.0)
        shade.ellipse(box(cx, foot_y - 0.005 * unit, rx, rx * 0.16), fill=(0, 0, 0, style.shadow))
    draw_creature(ImageDraw.Draw(canvas), spec.creature, spec.pose, cx, foot_y, unit, ink)
    return canvas.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
