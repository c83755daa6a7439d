"""RGB values of the world's colour names, and small colour helpers.

Body and accessory colours are saturated and far apart in hue or lightness, so that each name
stays readable at 128 px. Shared names (red, yellow, ...) have the same RGB in both lists.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

BODY_RGB: dict[str, RGB] = {
    "orange": (245, 125, 25),
    "blue": (45, 95, 225),
    "green": (60, 175, 65),
    "purple": (135, 65, 195),
    "pink": (250, 125, 185),
    "yellow": (250, 210, 35),
    "grey": (135, 138, 145),
    "brown": (135, 85, 45),
    "red": (220, 35, 40),
    "white": (248, 248, 245),
}

ACCESSORY_RGB: dict[str, RGB] = {
    "teal": (0, 168, 162),
    "red": BODY_RGB["red"],
    "yellow": BODY_RGB["yellow"],
    "blue": BODY_RGB["blue"],
    "purple": BODY_RGB["purple"],
    "pink": BODY_RGB["pink"],
    "green": BODY_RGB["green"],
    "black": (30, 30, 35),
}

OUTLINE: RGB = (45, 32, 38)
WHITE: RGB = (255, 255, 255)
INNER_PINK: RGB = (245, 150, 170)
NOSE_PINK: RGB = (235, 95, 130)
BEAK: RGB = (250, 170, 30)
HEART_RED: RGB = (230, 30, 70)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """``a`` moved a fraction ``t`` of the way towards ``b``."""
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def shade(colour: RGB, factor: float) -> RGB:
    """A darker (factor < 1) version of a colour."""
    return (round(colour[0] * factor), round(colour[1] * factor), round(colour[2] * factor))


def belly(colour: RGB) -> RGB:
    """The lighter belly and muzzle patch of a body colour (light grey for white bodies)."""
    if min(colour) > 230:
        return (222, 222, 232)
    return mix(colour, WHITE, 0.55)


def dark_mark(colour: RGB) -> RGB:
    """The colour of spots and stripes on a body colour."""
    if min(colour) > 230:
        return (150, 150, 165)
    return shade(colour, 0.55)
