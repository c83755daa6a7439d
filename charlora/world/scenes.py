"""Scene backgrounds: each scene is a colour layout plus a few shapes that make it recognisable.

Sizes of details follow the shorter side and positions spread over the whole frame, so a scene
fills any aspect ratio. All randomness (where the trees, stars, flowers go) comes from the
``random.Random`` passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from charlora.world.palette import RGB, mix, shade
from charlora.world.shapes import box, star

FOOT_LINE = 0.075
"""Creatures stand this fraction of the shorter side above the bottom edge."""


@dataclass(frozen=True)
class SceneStyle:
    """What the creature drawer needs to know about a scene."""

    ink: RGB            # motion lines: dark on light scenes, light on dark ones
    shadow: int         # opacity (0-255) of the creature's ground shadow


def gradient(size: tuple[int, int], stops: list[tuple[float, RGB]]) -> Image.Image:
    """A vertical gradient through colour ``stops`` (position 0 = top, 1 = bottom)."""
    width, height = size
    positions = np.linspace(0.0, 1.0, height)
    xs = [p for p, _ in stops]
    column = np.stack([np.interp(positions, xs, [c[k] for _, c in stops]) for k in range(3)], axis=-1)
    column = np.rint(column).astype(np.uint8).reshape(height, 1, 3)
    return Image.fromarray(column, "RGB").resize((width, height), Image.Resampling.NEAREST)


def _spread(rng: random.Random, count: int, width: float, jitter: float = 0.35) -> list[float]:
    """``count`` x positions spread evenly over ``width`` with some jitter."""
    step = width / count
    return [step * (i + 0.5 + rng.uniform(-jitter, jitter)) for i in range(count)]


def _count(width: int, height: int, per_square: float) -> int:
    """How many scattered details a frame gets: ``per_square`` per square of the shorter side."""
    return max(1, round(per_square * max(width, height) / min(width, height)))


def _cloud(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: RGB) -> None:
    for dx, dy, k in ((-0.9, 0.15, 0.6), (0.9, 0.15, 0.6), (-0.35, -0.2, 0.75), (0.4, -0.1, 0.7), (0.0, 0.2, 0.7)):
        draw.ellipse(box(cx + dx * r, cy + dy * r, k * r, k * r), fill=fill)


def _sun(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: RGB) -> None:
    draw.ellipse(box(cx, cy, r, r), fill=fill)


def _beach(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, int(h * 0.56)), [(0, (95, 180, 245)), (1, (185, 228, 250))]))
    d = ImageDraw.Draw(image)
    d.rectangle((0, h * 0.52, w, h * 0.68), fill=(25, 105, 200))
    for x in _spread(rng, _count(w, h, 3), w):
        y = h * rng.uniform(0.56, 0.64)
        d.line((x - 0.06 * s, y, x + 0.06 * s, y), fill=(120, 185, 240), width=max(1, round(0.012 * s)))
    d.rectangle((0, h * 0.68, w, h), fill=(242, 214, 140))
    d.ellipse((-0.2 * w, h * 0.66, 1.2 * w, h * 0.72), fill=(242, 214, 140))
    _sun(d, w * rng.choice((0.15, 0.85)), h * 0.15, 0.09 * s, (255, 215, 50))
    for x in _spread(rng, _count(w, h, 2), w):
        y = h * rng.uniform(0.8, 0.97)
        d.ellipse(box(x, y, 0.018 * s, 0.012 * s), fill=(215, 180, 110))
    return SceneStyle(ink=(60, 60, 80), shadow=60)


def _forest(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (25, 80, 40)), (0.7, (45, 110, 55)), (0.7, (70, 150, 60)), (1, (55, 130, 50))]))
    d = ImageDraw.Draw(image)
    for x in _spread(rng, _count(w, h, 6), w, jitter=0.2):
        r = s * rng.uniform(0.12, 0.18)
        d.ellipse(box(x, h * rng.uniform(0.05, 0.2), r, r), fill=(20, 60, 30))
    for x in _spread(rng, _count(w, h, 4), w):
        half = s * rng.uniform(0.035, 0.055)
        d.rectangle((x - half, -1, x + half, h * 0.74), fill=(105, 65, 35))
        d.line((x - half * 0.3, h * 0.3, x - half * 0.3, h * 0.6), fill=(80, 48, 25), width=max(1, round(half * 0.25)))
        d.ellipse(box(x, h * 0.74, half * 1.5, half * 0.35), fill=(105, 65, 35))
    for x in _spread(rng, _count(w, h, 3), w):
        r = s * rng.uniform(0.13, 0.2)
        d.ellipse(box(x, h * rng.uniform(0.0, 0.12), r * 1.3, r), fill=(30, 95, 45))
    for x in _spread(rng, _count(w, h, 5), w):
        y = h * rng.uniform(0.8, 0.97)
        d.polygon([(x - 0.03 * s, y), (x, y - 0.05 * s), (x + 0.03 * s, y)], fill=(40, 110, 40))
    return SceneStyle(ink=(230, 240, 210), shadow=70)


def _night(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (8, 12, 45)), (0.7, (40, 40, 105))]))
    d = ImageDraw.Draw(image)
    for _ in range(_count(w, h, 28)):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 0.68)
        r = s * rng.uniform(0.006, 0.012)
        d.ellipse(box(x, y, r, r), fill=(255, 250, 215))
    for _ in range(_count(w, h, 3)):
        d.polygon(star(rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.55) * h, s * 0.03), fill=(255, 240, 150))
    mx, my, mr = w * rng.choice((0.2, 0.8)), h * 0.2, s * 0.1
    d.ellipse(box(mx, my, mr, mr), fill=(255, 245, 190))
    d.ellipse(box(mx + mr * 0.45, my - mr * 0.2, mr * 0.85, mr * 0.85), fill=(14, 18, 56))
    d.ellipse((-0.3 * w, h * 0.7, 1.3 * w, h * 1.5), fill=(25, 45, 65))
    return SceneStyle(ink=(220, 220, 255), shadow=90)


def _snow(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (165, 190, 225)), (0.66, (215, 228, 245)), (0.66, (246, 249, 255)), (1, (236, 242, 252))]))
    d = ImageDraw.Draw(image)
    for x in _spread(rng, _count(w, h, 3), w):
        base, half, top = h * rng.uniform(0.64, 0.68), s * 0.09, h * rng.uniform(0.3, 0.42)
        d.polygon([(x - half, base), (x, top), (x + half, base)], fill=(35, 95, 65))
        d.polygon([(x - half * 0.35, top + (base - top) * 0.35), (x, top), (x + half * 0.35, top + (base - top) * 0.35)],
                  fill=(250, 252, 255))
    d.line((0, h * 0.66, w, h * 0.66), fill=(190, 205, 230), width=max(1, round(0.006 * s)))
    for _ in range(_count(w, h, 30)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = s * rng.uniform(0.008, 0.016)
        d.ellipse(box(x, y, r, r), fill=(255, 255, 255), outline=(185, 200, 225), width=max(1, round(0.003 * s)))
    return SceneStyle(ink=(70, 90, 130), shadow=50)


def _city(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (140, 185, 235)), (0.7, (205, 225, 245))]))
    d = ImageDraw.Draw(image)
    walls = [(175, 85, 65), (120, 125, 140), (195, 160, 115), (90, 110, 145), (150, 100, 80)]
    x = -rng.uniform(0, 0.1) * s
    while x < w:
        bw = s * rng.uniform(0.2, 0.3)
        top = h * rng.uniform(0.12, 0.4)
        wall = rng.choice(walls)
        d.rectangle((x, top, x + bw - 0.015 * s, h * 0.72), fill=wall)
        win = 0.035 * s
        wy = top + 0.04 * s
        while wy + win < h * 0.66:
            wx = x + 0.035 * s
            while wx + win < x + bw - 0.04 * s:
                d.rectangle((wx, wy, wx + win, wy + win * 1.3), fill=(255, 225, 110) if rng.random() < 0.6 else shade(wall, 0.6))
                wx += win * 2
            wy += win * 2.3
        x += bw
    d.rectangle((0, h * 0.72, w, h * 0.8), fill=(175, 175, 180))
    d.line((0, h * 0.72, w, h * 0.72), fill=(130, 130, 135), width=max(1, round(0.01 * s)))
    d.rectangle((0, h * 0.8, w, h), fill=(70, 72, 78))
    dash = 0.08 * s
    for i in range(int(w / (dash * 2)) + 2):
        d.rectangle((i * dash * 2, h * 0.9 - 0.008 * s, i * dash * 2 + dash, h * 0.9 + 0.008 * s), fill=(245, 245, 240))
    return SceneStyle(ink=(40, 40, 50), shadow=70)


def _room(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    paper = rng.choice([((240, 205, 165), (225, 180, 140)), ((205, 225, 200), (185, 210, 180)), ((235, 200, 215), (220, 180, 200))])
    d = ImageDraw.Draw(image)
    d.rectangle((0, 0, w, h * 0.7), fill=paper[0])
    stripe = 0.06 * s
    for i in range(int(w / (stripe * 2)) + 1):
        d.rectangle((i * stripe * 2, 0, i * stripe * 2 + stripe, h * 0.7), fill=paper[1])
    d.rectangle((0, h * 0.7, w, h), fill=(160, 100, 55))
    d.rectangle((0, h * 0.68, w, h * 0.71), fill=(245, 240, 230))
    for i in range(1, 4):
        y = h * (0.7 + 0.075 * i)
        d.line((0, y, w, y), fill=(125, 75, 40), width=max(1, round(0.008 * s)))
    wx = w * rng.choice((0.22, 0.78))
    ww, wh, wy = 0.17 * s, 0.15 * s, h * 0.3
    d.rectangle((wx - ww, wy - wh, wx + ww, wy + wh), fill=(250, 250, 245))
    d.rectangle((wx - ww * 0.85, wy - wh * 0.82, wx + ww * 0.85, wy + wh * 0.82), fill=(130, 195, 245))
    d.rectangle((wx - ww, wy - 0.01 * s, wx + ww, wy + 0.01 * s), fill=(250, 250, 245))
    d.rectangle((wx - 0.01 * s, wy - wh, wx + 0.01 * s, wy + wh), fill=(250, 250, 245))
    px = w - wx
    d.rectangle((px - 0.08 * s, h * 0.22, px + 0.08 * s, h * 0.38), fill=(120, 70, 40))
    d.rectangle((px - 0.06 * s, h * 0.235, px + 0.06 * s, h * 0.365), fill=(250, 200, 80))
    return SceneStyle(ink=(60, 40, 30), shadow=70)


def _meadow(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (105, 175, 245)), (0.62, (200, 230, 250))]))
    d = ImageDraw.Draw(image)
    for x in _spread(rng, _count(w, h, 1.5), w):
        _cloud(d, x, h * rng.uniform(0.1, 0.25), s * 0.07, (255, 255, 255))
    d.ellipse((-0.4 * w, h * 0.58, 0.7 * w, h * 0.9), fill=(110, 200, 85))
    d.ellipse((0.3 * w, h * 0.6, 1.4 * w, h * 0.9), fill=(100, 190, 75))
    d.rectangle((0, h * 0.7, w, h), fill=(90, 185, 70))
    for _ in range(_count(w, h, 14)):
        x, y = rng.uniform(0, w), h * rng.uniform(0.66, 0.99)
        petal = rng.choice([(255, 255, 255), (255, 215, 40), (245, 100, 160), (230, 50, 50)])
        r = s * 0.012
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            d.ellipse(box(x + dx * r, y + dy * r, r, r), fill=petal)
        d.ellipse(box(x, y, r * 0.8, r * 0.8), fill=(250, 190, 30) if petal != (255, 215, 40) else (200, 90, 20))
    return SceneStyle(ink=(40, 80, 40), shadow=60)


def _desert(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (250, 195, 120)), (0.6, (255, 235, 190))]))
    d = ImageDraw.Draw(image)
    _sun(d, w * rng.choice((0.2, 0.8)), h * 0.18, 0.11 * s, (255, 245, 200))
    d.ellipse((-0.5 * w, h * 0.5, 0.8 * w, h * 1.1), fill=(225, 165, 90))
    d.ellipse((0.3 * w, h * 0.55, 1.6 * w, h * 1.2), fill=(235, 180, 100))
    d.rectangle((0, h * 0.75, w, h), fill=(240, 195, 120))
    d.ellipse((-0.2 * w, h * 0.7, 1.2 * w, h * 0.8), fill=(240, 195, 120))
    for x in _spread(rng, _count(w, h, 1.5), w, jitter=0.3):
        base, top, half = h * rng.uniform(0.74, 0.8), h * rng.uniform(0.4, 0.5), 0.035 * s
        green = (55, 145, 70)
        d.rounded_rectangle((x - half, top, x + half, base), radius=half, fill=green)
        arm = 0.09 * s
        d.rounded_rectangle((x - half - arm, top + 0.12 * s, x - half + 1, top + 0.12 * s + half * 1.4), radius=half * 0.7, fill=green)
        d.rounded_rectangle((x - half - arm, top + 0.04 * s, x - half - arm + half * 1.4, top + 0.12 * s + half * 1.4),
                            radius=half * 0.7, fill=green)
        d.rounded_rectangle((x + half - 1, top + 0.18 * s, x + half + arm, top + 0.18 * s + half * 1.4), radius=half * 0.7, fill=green)
        d.rounded_rectangle((x + half + arm - half * 1.4, top + 0.1 * s, x + half + arm, top + 0.18 * s + half * 1.4),
                            radius=half * 0.7, fill=green)
    return SceneStyle(ink=(120, 70, 30), shadow=60)


def _underwater(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (40, 170, 215)), (0.8, (15, 70, 140))]))
    d = ImageDraw.Draw(image)
    d.ellipse((-0.3 * w, h * 0.8, 1.3 * w, h * 1.3), fill=(215, 195, 135))
    for x in _spread(rng, _count(w, h, 5), w):
        height = h * rng.uniform(0.25, 0.5)
        amp, top = 0.025 * s, h - height
        points = [(x + amp * (1 if i % 2 else -1), h - height * i / 6) for i in range(7)]
        d.line(points, fill=(40, 150, 80), width=max(2, round(0.03 * s)), joint="curve")
        d.ellipse(box(points[-1][0], top, 0.02 * s, 0.03 * s), fill=(40, 150, 80))
    for _ in range(_count(w, h, 12)):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 0.8)
        r = s * rng.uniform(0.012, 0.03)
        d.ellipse(box(x, y, r, r), outline=(200, 240, 255), width=max(1, round(0.006 * s)))
        d.ellipse(box(x - r * 0.35, y - r * 0.35, r * 0.25, r * 0.25), fill=(220, 248, 255))
    return SceneStyle(ink=(210, 240, 255), shadow=60)


def _sunset(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (80, 45, 125)), (0.35, (205, 85, 110)), (0.66, (255, 165, 70))]))
    d = ImageDraw.Draw(image)
    sx = w * rng.uniform(0.3, 0.7)
    _sun(d, sx, h * 0.66, 0.15 * s, (255, 215, 90))
    for _ in range(_count(w, h, 2)):
        y = h * rng.uniform(0.15, 0.45)
        x = rng.uniform(0, w)
        d.rounded_rectangle((x - 0.2 * s, y, x + 0.2 * s, y + 0.025 * s), radius=0.012 * s, fill=(245, 130, 120))
    d.ellipse((-0.4 * w, h * 0.64, 0.8 * w, h * 1.2), fill=(75, 35, 80))
    d.ellipse((0.2 * w, h * 0.67, 1.5 * w, h * 1.2), fill=(60, 28, 70))
    d.rectangle((0, h * 0.8, w, h), fill=(60, 28, 70))
    return SceneStyle(ink=(255, 210, 170), shadow=80)


def _rain(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (80, 88, 105)), (0.7, (145, 152, 165)), (0.7, (85, 90, 100)), (1, (70, 74, 84))]))
    d = ImageDraw.Draw(image)
    for x in _spread(rng, _count(w, h, 2.5), w, jitter=0.2):
        _cloud(d, x, h * rng.uniform(0.04, 0.12), s * 0.1, (60, 66, 80))
    for x in _spread(rng, _count(w, h, 2), w):
        y = h * rng.uniform(0.78, 0.95)
        d.ellipse(box(x, y, 0.12 * s, 0.025 * s), fill=(125, 140, 165))
    length, lw = 0.07 * s, max(1, round(0.007 * s))
    for _ in range(_count(w, h, 45)):
        x, y = rng.uniform(0, w + length * 0.4), rng.uniform(0, h)
        d.line((x, y, x - length * 0.3, y + length), fill=(200, 210, 230), width=lw)
    return SceneStyle(ink=(225, 230, 245), shadow=70)


def _sky(image: Image.Image, rng: random.Random) -> SceneStyle:
    w, h = image.size
    s = min(w, h)
    image.paste(gradient((w, h), [(0, (65, 140, 235)), (1, (165, 210, 250))]))
    d = ImageDraw.Draw(image)
    for x in _spread(rng, _count(w, h, 2), w):
        _cloud(d, x, h * rng.uniform(0.12, 0.45), s * rng.uniform(0.05, 0.08), (250, 252, 255))
    cloud = (248, 250, 255)
    for x in _spread(rng, _count(w, h, 4), w, jitter=0.15):
        r = s * rng.uniform(0.12, 0.17)
        d.ellipse(box(x, h * 0.86, r * 1.3, r), fill=cloud)
    d.rectangle((0, h * 0.88, w, h), fill=cloud)
    return SceneStyle(ink=(60, 90, 160), shadow=40)


def _studio(colour: RGB) -> Callable[[Image.Image, random.Random], SceneStyle]:
    def draw(image: Image.Image, rng: random.Random) -> SceneStyle:
        w, h = image.size
        image.paste(gradient((w, h), [(0, colour), (0.7, colour), (0.78, shade(colour, 0.93)), (1, shade(colour, 0.9))]))
        return SceneStyle(ink=mix(colour, (0, 0, 0), 0.6), shadow=50)
    return draw


SCENE_DRAWERS: dict[str, Callable[[Image.Image, random.Random], SceneStyle]] = {
    "beach": _beach, "forest": _forest, "night": _night, "snow": _snow, "city": _city, "room": _room,
    "meadow": _meadow, "desert": _desert, "underwater": _underwater, "sunset": _sunset, "rain": _rain, "sky": _sky,
    "studio_white": _studio((246, 246, 244)), "studio_blue": _studio((140, 190, 245)),
    "studio_pink": _studio((255, 190, 215)), "studio_yellow": _studio((255, 232, 140)),
}


def draw_scene(scene: str, size: tuple[int, int], seed: int) -> tuple[Image.Image, SceneStyle]:
    """The background of ``scene`` at ``size`` (RGB) and its style, details placed by ``seed``."""
    image = Image.new("RGB", size)
    style = SCENE_DRAWERS[scene](image, random.Random(seed))
    return image, style
