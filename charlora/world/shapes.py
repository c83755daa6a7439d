"""Polygon helpers for shapes Pillow has no primitive for: rotated ellipses, stars, hearts."""

from __future__ import annotations

import math

Point = tuple[float, float]

_UNIT_CIRCLE = [(math.cos(2 * math.pi * i / 48), math.sin(2 * math.pi * i / 48)) for i in range(48)]
_UNIT_STAR = [((1.0 if i % 2 == 0 else 0.45) * math.cos(-math.pi / 2 + i * math.pi / 5),
               (1.0 if i % 2 == 0 else 0.45) * math.sin(-math.pi / 2 + i * math.pi / 5)) for i in range(10)]
_UNIT_HEART = [(16 * math.sin(t) ** 3 / 17,
                -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17)
               for t in (2 * math.pi * i / 32 for i in range(32))]


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> list[Point]:
    """An ellipse as a polygon, rotated by ``angle`` degrees (counter-clockwise on screen)."""
    a = math.radians(-angle)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + rx * x * ca - ry * y * sa, cy + rx * x * sa + ry * y * ca) for x, y in _UNIT_CIRCLE]


def star(cx: float, cy: float, r: float) -> list[Point]:
    """A five-pointed star of outer radius ``r``, one point up."""
    return [(cx + r * x, cy + r * y) for x, y in _UNIT_STAR]


def heart(cx: float, cy: float, r: float) -> list[Point]:
    """A heart about ``2 r`` wide, centred on (cx, cy)."""
    return [(cx + r * x, cy + r * y) for x, y in _UNIT_HEART]


def box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    """The bounding box of a centred ellipse or rectangle, as Pillow wants it."""
    return (cx - rx, cy - ry, cx + rx, cy + ry)
