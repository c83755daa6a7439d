"""Creature drawing: a body shape with a face, species cues (ears, tail, snout), a mark, an accessory.

Every length is a multiple of the creature unit ``u`` (about the creature's height in pixels), so
a creature looks the same at any size. The creature faces the viewer; its tail sticks out on the
right, a waving arm goes up on the left. Draw order: things behind the body (tail, ears,
backpack, legs), the body, then what lies on it (belly, mark, face, accessory, arms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw

from charlora.world.attributes import Creature
from charlora.world.palette import (ACCESSORY_RGB, BEAK, BODY_RGB, HEART_RED, INNER_PINK, NOSE_PINK, OUTLINE, RGB, WHITE,
                                    belly, dark_mark, shade)
from charlora.world.shapes import box, ellipse, heart, star

# Body width and height in units of u; rounded-rectangle corner radius (None: an ellipse).
BODY_SHAPES: dict[str, tuple[float, float, float | None]] = {
    "round": (0.62, 0.60, None),
    "tall": (0.44, 0.76, None),
    "square": (0.64, 0.56, 0.1),
    "long": (0.94, 0.42, 0.17),
}
LEG = 0.11       # leg height below the body when standing
JUMP = 0.2       # how high a jumping creature floats above its shadow


@dataclass(frozen=True)
class Body:
    """The body outline in pixels: centre, half width and half height, corner radius (None: ellipse)."""

    cx: float
    cy: float
    rx: float
    ry: float
    radius: float | None

    @property
    def top(self) -> float:
        return self.cy - self.ry

    @property
    def bottom(self) -> float:
        return self.cy + self.ry

    def half_width(self, y: float) -> float:
        """Half the body's width at height ``y`` (0 outside the body)."""
        dy = abs(y - self.cy)
        if dy >= self.ry:
            return 0.0
        if self.radius is None:
            return self.rx * math.sqrt(1.0 - (dy / self.ry) ** 2)
        corner = dy - (self.ry - self.radius)
        if corner <= 0:
            return self.rx
        return self.rx - self.radius + math.sqrt(max(0.0, self.radius ** 2 - corner ** 2))

    def top_at(self, dx: float) -> float:
        """The body's top edge at horizontal offset ``dx`` from the centre."""
        dx = abs(dx)
        if dx >= self.rx:
            return self.cy
        if self.radius is None:
            return self.cy - self.ry * math.sqrt(1.0 - (dx / self.rx) ** 2)
        corner = dx - (self.rx - self.radius)
        if corner <= 0:
            return self.top
        return self.top + self.radius - math.sqrt(max(0.0, self.radius ** 2 - corner ** 2))


def body_size(creature: Creature, pose: str) -> tuple[float, float]:
    """Body width and height in units of u (sitting creatures are a little squat)."""
    width, height, _ = BODY_SHAPES[creature.body]
    return (width * 1.05, height * 0.93) if pose == "sitting" else (width, height)


def extent(creature: Creature, pose: str) -> tuple[float, float, float]:
    """How far the creature reaches left and right of its centre and above its feet, in units of u.

    Measured on a test drawing (once per body, species, accessory, mark and pose), so that it
    always matches what :func:`draw_creature` draws.
    """
    return _measure(creature.body, creature.species, creature.accessory, creature.mark, pose)


@cache
def _measure(body: str, species: str, accessory: str, mark: str, pose: str) -> tuple[float, float, float]:
    u = 100.0
    probe = Creature(body, species, "blue", accessory, None if accessory == "none" else "red", mark)
    canvas = Image.new("RGBA", (int(4 * u), int(3 * u)), (0, 0, 0, 0))
    cx, foot_y = 2 * u, 2.5 * u
    draw_creature(ImageDraw.Draw(canvas), probe, pose, cx, foot_y, u, (0, 0, 0))
    left, top, right, _ = canvas.getchannel("A").getbbox()
    slack = 0.01
    return (cx - left) / u + slack, (right - cx) / u + slack, (foot_y - top) / u + slack


class _Pen:
    """Drawing with the creature's outline width."""

    def __init__(self, draw: ImageDraw.ImageDraw, u: float) -> None:
        self.d = draw
        self.u = u
        self.w = max(1, round(0.022 * u))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB, outline: bool = True) -> None:
        self.d.ellipse(box(cx, cy, rx, ry), fill=fill, outline=OUTLINE if outline else None, width=self.w)

    def poly(self, points: list[tuple[float, float]], fill: RGB | None, outline: bool = True, width: int | None = None) -> None:
        """A filled polygon; its outline is a line along the edges with round joints."""
        self.d.polygon(points, fill=fill)
        if outline:
            self.d.line([*points, points[0], points[1]], fill=OUTLINE, width=width or self.w, joint="curve")

    def oval(self, points: list[tuple[float, float]], fill: RGB, outline: bool = True) -> None:
        """A filled polygon from :func:`ellipse`: its small turns need round joints only for thick lines."""
        self.d.polygon(points, fill=fill)
        if outline:
            self.d.line([*points, points[0], points[1]], fill=OUTLINE, width=self.w, joint="curve" if self.w > 8 else None)

    def rect(self, xy: tuple[float, float, float, float], radius: float, fill: RGB, outline: bool = True) -> None:
        self.d.rounded_rectangle(xy, radius=radius, fill=fill, outline=OUTLINE if outline else None, width=self.w)

    def stroke(self, points: list[tuple[float, float]], fill: RGB, width: float, outline: bool = True) -> None:
        """A thick curved line, with an outline around it."""
        width = max(1, round(width))
        if outline:
            self.d.line(points, fill=OUTLINE, width=width + 2 * self.w, joint="curve")
            for x, y in (points[0], points[-1]):
                r = width / 2 + self.w
                self.d.ellipse(box(x, y, r, r), fill=OUTLINE)
        self.d.line(points, fill=fill, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            r = width / 2
            self.d.ellipse(box(x, y, r, r), fill=fill)


def draw_creature(draw: ImageDraw.ImageDraw, creature: Creature, pose: str, cx: float, foot_y: float, u: float,
                  ink: RGB) -> None:
    """Draw ``creature`` in ``pose`` centred at ``cx`` with its feet (or seat) on ``foot_y``.

    ``u`` is the creature unit in pixels; ``ink`` colours motion lines (jumping, waving).
    """
    pen = _Pen(draw, u)
    colour = BODY_RGB[creature.colour]
    width, height = body_size(creature, pose)
    lift = JUMP * u if pose == "jumping" else 0.0
    legs = 0.0 if pose == "sitting" else LEG * u
    bottom = foot_y - lift - legs
    radius = BODY_SHAPES[creature.body][2]
    body = Body(cx, bottom - height * u / 2, width * u / 2, height * u / 2, None if radius is None else radius * u)
    eye_y = body.top + min(0.36 * height, 0.22) * u

    if pose == "jumping":
        for dx in (-0.12, 0.0, 0.12):
            x = cx + dx * u
            draw.line((x, foot_y - lift * 0.55, x, foot_y - lift * 0.15), fill=ink, width=max(1, round(0.02 * u)))
    _tail(pen, creature, body, colour)
    _ears(pen, creature, body, colour)
    if creature.accessory == "backpack":
        pack = ACCESSORY_RGB[creature.accessory_colour]
        y = body.cy + 0.05 * u
        pen.rect((cx - body.half_width(y) - 0.07 * u, y - 0.15 * u, cx + body.half_width(y) + 0.07 * u,
                  min(y + 0.17 * u, body.bottom)), 0.05 * u, pack)
    if pose != "sitting":
        spread = min(0.17, width * 0.3)
        for side in (-1, 1):
            x = cx + side * spread * u
            pen.rect((x - 0.055 * u, bottom - 0.08 * u, x + 0.055 * u, bottom + legs), 0.04 * u, shade(colour, 0.85))
    _arms(pen, creature, body, pose, colour, ink, behind=True)
    if body.radius is None:
        pen.ellipse(body.cx, body.cy, body.rx, body.ry, colour)
    else:
        pen.rect(box(body.cx, body.cy, body.rx, body.ry), body.radius, colour)
    if creature.species == "owl":
        pen.ellipse(cx, body.cy + body.ry * 0.35, body.rx * 0.6, body.ry * 0.55, belly(colour), outline=False)
    else:
        pen.ellipse(cx, body.cy + body.ry * 0.45, min(body.rx * 0.55, 0.2 * u), body.ry * 0.45, belly(colour), outline=False)
    _mark(pen, creature, body, eye_y, colour)
    if body.radius is None:
        draw.ellipse(box(body.cx, body.cy, body.rx, body.ry), outline=OUTLINE, width=pen.w)
    else:
        draw.rounded_rectangle(box(body.cx, body.cy, body.rx, body.ry), radius=body.radius, outline=OUTLINE, width=pen.w)
    _face(pen, creature, body, eye_y, colour)
    _accessory(pen, creature, body, eye_y)
    if pose == "sitting":
        for side in (-1, 1):
            x = cx + side * 0.14 * u
            pen.ellipse(x, foot_y - 0.045 * u, 0.075 * u, 0.05 * u, shade(colour, 0.85))
            pen.ellipse(x, foot_y - 0.04 * u, 0.035 * u, 0.025 * u, belly(colour), outline=False)
    _arms(pen, creature, body, pose, colour, ink, behind=False)


def _tail(pen: _Pen, creature: Creature, body: Body, colour: RGB) -> None:
    u = pen.u
    y = body.cy + body.ry * 0.45
    x = body.cx + body.half_width(y) - 0.03 * u
    species = creature.species
    if species == "fox":
        angle = 35.0
        a = math.radians(angle)
        ux, uy = math.cos(a), -math.sin(a)
        length, girth = 0.22 * u, 0.1 * u
        tx, ty = x + ux * length * 0.9, y + uy * length * 0.9
        pen.oval(ellipse(tx, ty, length, girth, angle), colour)
        pen.oval(ellipse(tx + ux * length * 0.72, ty + uy * length * 0.72, 0.085 * u, 0.075 * u, angle), WHITE)
    elif species == "cat":
        points = [(0.0, 0.0), (0.09, 0.0), (0.16, -0.05), (0.19, -0.13), (0.17, -0.21), (0.11, -0.25), (0.06, -0.22)]
        pen.stroke([(x + px * u, y + py * u) for px, py in points], colour, 0.045 * u)
    elif species == "bear":
        pen.ellipse(x + 0.05 * u, y + 0.05 * u, 0.055 * u, 0.05 * u, colour)
    elif species == "rabbit":
        pen.ellipse(x + 0.06 * u, y + 0.06 * u, 0.075 * u, 0.07 * u, WHITE)
    elif species == "mouse":
        points = [(0.0, 0.02), (0.12, 0.06), (0.24, 0.03), (0.32, -0.05), (0.35, -0.15)]
        pen.stroke([(x + px * u, y + py * u) for px, py in points], INNER_PINK, 0.025 * u)


def _ears(pen: _Pen, creature: Creature, body: Body, colour: RGB) -> None:
    u = pen.u
    species = creature.species
    spread = min(0.19 * u, body.rx * 0.62) if species != "mouse" else min(0.22 * u, body.rx * 0.7)
    for side in (-1, 1):
        x = body.cx + side * spread
        base = body.top_at(spread) + 0.05 * u
        if species in ("fox", "cat"):
            tall, half = (0.25, 0.085) if species == "fox" else (0.18, 0.1)
            tip = (x + side * 0.03 * u, base - tall * u)
            pen.poly([(x - half * u, base), tip, (x + half * u, base)], colour)
            inner = WHITE if species == "fox" else INNER_PINK
            pen.poly([(x - half * 0.5 * u, base - 0.03 * u), (tip[0], tip[1] + 0.08 * u), (x + half * 0.5 * u, base - 0.03 * u)],
                     inner, outline=False)
        elif species == "bear":
            pen.ellipse(x, base - 0.08 * u, 0.075 * u, 0.075 * u, colour)
            pen.ellipse(x, base - 0.08 * u, 0.04 * u, 0.04 * u, belly(colour), outline=False)
        elif species == "rabbit":
            pen.oval(ellipse(x + side * 0.02 * u, base - 0.2 * u, 0.065 * u, 0.2 * u, -side * 8), colour)
            pen.oval(ellipse(x + side * 0.02 * u, base - 0.19 * u, 0.03 * u, 0.15 * u, -side * 8), INNER_PINK, outline=False)
        elif species == "mouse":
            pen.ellipse(x + side * 0.05 * u, base - 0.11 * u, 0.13 * u, 0.13 * u, colour)
            pen.ellipse(x + side * 0.05 * u, base - 0.11 * u, 0.085 * u, 0.085 * u, INNER_PINK, outline=False)
        elif species == "owl":
            tip = (x + side * 0.1 * u, base - 0.17 * u)
            pen.poly([(x - 0.07 * u, base), tip, (x + 0.07 * u, base)], shade(colour, 0.8))


def _arms(pen: _Pen, creature: Creature, body: Body, pose: str, colour: RGB, ink: RGB, behind: bool) -> None:
    """Raised arms (jumping: both, waving: the left one) go behind the body, lowered ones in front."""
    u = pen.u
    owl = creature.species == "owl"
    fill = shade(colour, 0.8) if owl else colour
    length, girth = (0.15, 0.065) if owl else (0.1, 0.05)
    shoulder_y = body.cy - body.ry * 0.1
    for side in (-1, 1):
        raised = pose == "jumping" or (pose == "waving" and side == -1)
        if raised != behind:
            continue
        if raised:
            x = body.cx + side * (body.half_width(shoulder_y) + 0.08 * u)
            y = shoulder_y - (length + 0.03) * u
            pen.oval(ellipse(x, y, girth * u, (length + 0.03) * u, -side * 35), fill)
            if pose == "waving":
                for k in (1.0, 1.5):
                    r = k * 0.1 * u
                    pen.d.arc(box(x + 0.02 * u, y - 0.02 * u, r, r), 190, 260, fill=ink, width=max(1, round(0.024 * u)))
        else:
            y = body.cy + body.ry * 0.2
            x = body.cx + side * (body.half_width(y) + 0.005 * u)
            pen.oval(ellipse(x, y, girth * u, length * u, side * 15), fill)


def _neck_y(body: Body, eye_y: float, u: float) -> float:
    """Where a scarf sits: just under the mouth."""
    return eye_y + (0.165 if body.ry < 0.25 * u else 0.19) * u


def _mark(pen: _Pen, creature: Creature, body: Body, eye_y: float, colour: RGB) -> None:
    u, cx = pen.u, body.cx
    if creature.mark == "star":
        forehead = eye_y - body.top
        r = min(0.08 * u, forehead * 0.42)
        points = star(cx, body.top + forehead * 0.5, r)
        pen.d.polygon(points, fill=WHITE)
        if creature.colour == "white":  # a white star on white fur needs an edge
            pen.d.line([*points, points[0], points[1]], fill=(150, 150, 165), width=max(1, round(pen.w * 0.6)), joint="curve")
    elif creature.mark == "spots":
        dark = dark_mark(colour)
        for side, k in ((-1, -0.15), (-1, 0.45), (1, 0.05), (1, 0.55), (-1, -0.6)):
            y = body.cy + k * body.ry
            x = cx + side * (body.half_width(y) - 0.08 * u)
            pen.ellipse(x, y, 0.045 * u, 0.045 * u, dark, outline=False)
    elif creature.mark == "stripes":
        dark = dark_mark(colour)
        width = max(1, round(0.04 * u))
        for k in (-0.2, 0.15, 0.5):
            y = body.cy + k * body.ry
            for side in (-1, 1):
                edge = cx + side * body.half_width(y)
                pen.d.line((edge, y, edge - side * 0.14 * u, y + 0.02 * u), fill=dark, width=width)
        for dx in (-0.055, 0.0, 0.055):
            top = body.top_at(dx * u)
            pen.d.line((cx + dx * u, top, cx + dx * u, top + 0.075 * u), fill=dark, width=width)
    elif creature.mark == "heart":
        fill = WHITE if creature.colour in ("red", "pink") else HEART_RED
        if creature.body == "long":
            x, y = cx + 0.28 * u, body.cy + 0.1 * body.ry
        else:
            x, y = cx, min(max(body.cy + 0.4 * body.ry, _neck_y(body, eye_y, u) + 0.1 * u), body.bottom - 0.09 * u)
        pen.poly(heart(x, y, 0.075 * u), fill)


def _face(pen: _Pen, creature: Creature, body: Body, eye_y: float, colour: RGB) -> None:
    u, cx, d = pen.u, body.cx, pen.d
    species = creature.species
    nose_y = eye_y + 0.06 * u
    if species == "owl":
        for side in (-1, 1):
            x = cx + side * 0.085 * u
            pen.ellipse(x, eye_y, 0.07 * u, 0.07 * u, WHITE)
            pen.ellipse(x, eye_y, 0.035 * u, 0.035 * u, OUTLINE, outline=False)
            pen.ellipse(x - 0.012 * u, eye_y - 0.012 * u, 0.012 * u, 0.012 * u, WHITE, outline=False)
        pen.poly([(cx - 0.035 * u, eye_y + 0.03 * u), (cx + 0.035 * u, eye_y + 0.03 * u), (cx, eye_y + 0.11 * u)], BEAK)
        return
    if species in ("fox", "bear"):
        patch = WHITE if species == "fox" else belly(colour)
        pen.ellipse(cx, eye_y + 0.075 * u, 0.09 * u, 0.058 * u, patch, outline=False)
    for side in (-1, 1):
        x = cx + side * 0.085 * u
        pen.ellipse(x, eye_y, 0.035 * u, 0.045 * u, OUTLINE, outline=False)
        pen.ellipse(x - 0.012 * u, eye_y - 0.016 * u, 0.013 * u, 0.013 * u, WHITE, outline=False)
    if species == "cat":
        for side in (-1, 1):
            for dy in (-0.012, 0.02):
                d.line((cx + side * 0.07 * u, nose_y + 0.02 * u, cx + side * 0.21 * u, nose_y + dy * 3 * u),
                       fill=OUTLINE, width=max(1, round(0.012 * u)))
    nose = OUTLINE if species in ("fox", "bear") else NOSE_PINK
    nose_r = 0.035 if species == "bear" else 0.027
    pen.ellipse(cx, nose_y, nose_r * u, nose_r * 0.75 * u, nose, outline=False)
    if species == "rabbit":
        d.rectangle((cx - 0.022 * u, nose_y + 0.04 * u, cx + 0.022 * u, nose_y + 0.075 * u), fill=WHITE, outline=OUTLINE,
                    width=max(1, round(pen.w * 0.6)))
    d.arc(box(cx, nose_y + 0.008 * u, 0.038 * u, 0.038 * u), 25, 155, fill=OUTLINE, width=max(1, round(pen.w * 0.8)))


def _accessory(pen: _Pen, creature: Creature, body: Body, eye_y: float) -> None:
    if creature.accessory == "none":
        return
    u, cx, d = pen.u, body.cx, pen.d
    colour = ACCESSORY_RGB[creature.accessory_colour]
    trim = (95, 95, 105) if creature.accessory_colour == "black" else shade(colour, 0.62)
    kind = creature.accessory
    if kind == "scarf":
        y = _neck_y(body, eye_y, u)
        half = body.half_width(y) + 0.02 * u
        end = min(y + 0.17 * u, body.bottom + 0.02 * u)
        pen.rect((cx + 0.07 * u, y, cx + 0.15 * u, end), 0.015 * u, colour)
        pen.d.line((cx + 0.07 * u + pen.w, end - 0.035 * u, cx + 0.15 * u - pen.w, end - 0.035 * u), fill=trim,
                   width=max(1, round(0.015 * u)))
        pen.rect((cx - half, y - 0.042 * u, cx + half, y + 0.042 * u), 0.035 * u, colour)
    elif kind == "hat":
        base = body.top + 0.035 * u
        pen.rect((cx - 0.125 * u, base - 0.23 * u, cx + 0.125 * u, base - 0.01 * u), 0.02 * u, colour)
        d.rectangle((cx - 0.125 * u + pen.w, base - 0.095 * u, cx + 0.125 * u - pen.w, base - 0.05 * u), fill=trim)
        pen.rect((cx - 0.19 * u, base - 0.045 * u, cx + 0.19 * u, base + 0.005 * u), 0.02 * u, colour)
    elif kind == "bow":
        x = cx - 0.14 * u
        y = body.top_at(0.14 * u) + 0.01 * u
        for side in (-1, 1):
            pen.poly([(x, y), (x + side * 0.15 * u, y - 0.095 * u), (x + side * 0.15 * u, y + 0.095 * u)], colour)
        pen.ellipse(x, y, 0.042 * u, 0.042 * u, trim)
    elif kind == "glasses":
        r = 0.085 * u if creature.species == "owl" else 0.065 * u
        ring = max(1, round(0.03 * u))
        for side in (-1, 1):
            d.ellipse(box(cx + side * 0.085 * u, eye_y, r, r), outline=colour, width=ring)
        d.line((cx - 0.085 * u + r, eye_y, cx + 0.085 * u - r, eye_y), fill=colour, width=ring)
        for side in (-1, 1):
            d.line((cx + side * (0.085 * u + r), eye_y, cx + side * (0.085 * u + r + 0.04 * u), eye_y - 0.02 * u),
                   fill=colour, width=ring)
    elif kind == "backpack":
        top = _neck_y(body, eye_y, u) - 0.02 * u
        bottom = body.cy + body.ry * 0.7
        for side in (-1, 1):
            x = cx + side * body.half_width(body.cy) * 0.62
            pen.rect((x - 0.025 * u, top, x + 0.025 * u, bottom), 0.01 * u, colour)
