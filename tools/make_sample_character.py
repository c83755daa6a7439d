"""Draw the shipped sample character "Bramble" into data/raw (deterministic; run to regenerate).

Bramble is an original, simple character: a round orange fox-like creature with a cream belly,
a teal scarf and a white star-shaped mark on the forehead. The images vary pose, scale,
background, lighting, size and file format, so that preprocess has real work to do: JPEG and
PNG, one RGBA PNG, one JPEG with an EXIF orientation tag, one image larger than 3000 px.
Captions: some images have a ``.txt`` beside them (as users often write), the rest are in
``metadata.jsonl`` (the Hugging Face imagefolder convention), so the default run needs no
captioning model.

    python tools/make_sample_character.py [--out data/raw]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ORANGE = (226, 112, 38)
CREAM = (250, 232, 200)
TEAL = (22, 150, 150)
DARK = (40, 28, 24)


@dataclass(frozen=True)
class Shot:
    file: str
    size: tuple[int, int]
    background: str
    scale: float
    center: tuple[float, float]
    tilt: float
    light: float
    expression: str
    caption: str
    caption_beside: bool  # True: <file>.txt beside the image; False: a metadata.jsonl row


SHOTS = [
    Shot("bramble_meadow.jpg", (1400, 1050), "meadow", 0.55, (0.5, 0.58), 0, 1.0, "smile",
         "a round orange fox creature with a teal scarf standing in a green meadow under a blue sky", True),
    Shot("bramble_closeup.png", (900, 900), "studio", 0.95, (0.5, 0.6), 0, 1.0, "smile",
         "close-up portrait of a round orange fox creature with a white star mark on its forehead", True),
    Shot("bramble_night.jpg", (1280, 720), "night", 0.45, (0.35, 0.6), -8, 0.55, "surprised",
         "a round orange fox creature looking surprised at night under a starry sky", False),
    Shot("bramble_room.jpg", (1024, 1280), "room", 0.5, (0.5, 0.62), 6, 0.9, "smile",
         "a round orange fox creature with a teal scarf sitting in a cosy room with striped wallpaper", False),
    Shot("bramble_beach.jpg", (1600, 1000), "beach", 0.4, (0.65, 0.6), 0, 1.15, "happy",
         "a happy round orange fox creature on a sunny beach beside the sea", True),
    Shot("bramble_snow.png", (1000, 800), "snow", 0.5, (0.45, 0.6), -4, 1.1, "smile",
         "a round orange fox creature with a teal scarf in the snow", False),
    Shot("bramble_sunset.jpg", (1500, 900), "sunset", 0.42, (0.5, 0.6), 10, 0.85, "calm",
         "a calm round orange fox creature at sunset with an orange and purple sky", False),
    Shot("bramble_forest.jpg", (1100, 1100), "forest", 0.5, (0.4, 0.62), 0, 0.75, "surprised",
         "a round orange fox creature in a dark green forest between tall trees", True),
    Shot("bramble_cutout.png", (800, 1000), "transparent", 0.7, (0.5, 0.55), 0, 1.0, "happy",
         "a round orange fox creature with a teal scarf on a plain white background", False),
    Shot("bramble_phone.jpg", (1200, 900), "street", 0.5, (0.5, 0.6), 0, 0.95, "smile",
         "a round orange fox creature walking down a city street with grey buildings", False),
    Shot("bramble_poster.jpg", (3200, 2400), "sky", 0.5, (0.5, 0.55), -12, 1.05, "happy",
         "a happy round orange fox creature floating in a bright sky with white clouds", False),
    Shot("bramble_tiny_wave.png", (720, 720), "studio_blue", 0.3, (0.3, 0.7), 15, 1.0, "happy",
         "a small round orange fox creature waving in the lower left corner on a blue background", True),
    Shot("bramble_rain.jpg", (1000, 1333), "rain", 0.55, (0.5, 0.6), 0, 0.7, "calm",
         "a round orange fox creature in the rain with a teal scarf", False),
    Shot("bramble_desk.png", (1200, 800), "desk", 0.6, (0.6, 0.62), -6, 1.0, "smile",
         "a round orange fox creature sitting on a wooden desk next to a lamp", False),
]
# Saved with EXIF orientation 6 (rotate 90 degrees clockwise to view), pixels stored sideways.
EXIF_ROTATED = "bramble_phone.jpg"


def _gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    width, height = size
    column = Image.new("RGB", (1, height))
    for y in range(height):
        t = y / max(1, height - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return column.resize(size)


def background(kind: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    skies = {
        "meadow": ((120, 180, 240), (200, 230, 250)), "night": ((10, 14, 40), (40, 40, 90)),
        "beach": ((90, 170, 235), (190, 225, 245)), "snow": ((200, 210, 225), (240, 244, 250)),
        "sunset": ((90, 50, 120), (250, 150, 70)), "forest": ((30, 60, 35), (60, 100, 55)),
        "street": ((160, 170, 180), (200, 205, 210)), "sky": ((70, 140, 230), (180, 215, 250)),
        "studio": ((235, 225, 210), (200, 190, 175)), "studio_blue": ((60, 100, 180), (120, 160, 220)),
        "rain": ((90, 100, 115), (130, 140, 150)), "room": ((230, 200, 170), (200, 170, 140)),
        "desk": ((220, 215, 205), (190, 185, 175)),
    }
    if kind == "transparent":
        return Image.new("RGBA", size, (0, 0, 0, 0))
    image = _gradient(size, *skies[kind])
    draw = ImageDraw.Draw(image)
    if kind in ("meadow", "snow", "beach"):
        ground = {"meadow": (80, 160, 70), "snow": (245, 248, 252), "beach": (235, 210, 150)}[kind]
        draw.rectangle([0, int(height * 0.7), width, height], fill=ground)
        if kind == "beach":
            draw.rectangle([0, int(height * 0.6), width, int(height * 0.7)], fill=(40, 110, 190))
    if kind == "night":
        for _ in range(80):
            x, y = rng.randrange(width), rng.randrange(int(height * 0.6))
            draw.ellipse([x, y, x + 3, y + 3], fill=(255, 255, 220))
    if kind == "forest":
        for i in range(7):
            x = int(width * (i + 0.5) / 7 + rng.uniform(-20, 20))
            draw.rectangle([x - 18, 0, x + 18, height], fill=(70, 45, 30))
    if kind == "room":
        for x in range(0, width, 60):
            draw.rectangle([x, 0, x + 30, int(height * 0.75)], fill=(215, 180, 150))
        draw.rectangle([0, int(height * 0.75), width, height], fill=(140, 90, 60))
    if kind == "street":
        for i in range(5):
            x = i * width // 5
            draw.rectangle([x + 10, int(height * rng.uniform(0.1, 0.3)), x + width // 5 - 10, int(height * 0.75)],
                           fill=(110 + 10 * i, 110 + 10 * i, 120 + 10 * i))
        draw.rectangle([0, int(height * 0.75), width, height], fill=(70, 70, 75))
    if kind == "sky":
        for _ in range(6):
            x, y = rng.randrange(width), rng.randrange(int(height * 0.8))
            r = rng.randrange(width // 20, width // 8)
            draw.ellipse([x - r, y - r // 2, x + r, y + r // 2], fill=(250, 250, 255))
    if kind == "rain":
        for _ in range(300):
            x, y = rng.randrange(width), rng.randrange(height)
            draw.line([x, y, x - 6, y + 24], fill=(180, 190, 210), width=2)
    if kind == "desk":
        draw.rectangle([0, int(height * 0.72), width, height], fill=(150, 100, 55))
        draw.rectangle([int(width * 0.12), int(height * 0.3), int(width * 0.16), int(height * 0.72)], fill=(60, 60, 60))
        draw.polygon([(int(width * 0.06), int(height * 0.3)), (int(width * 0.22), int(height * 0.3)),
                      (int(width * 0.17), int(height * 0.15)), (int(width * 0.11), int(height * 0.15))], fill=(240, 200, 60))
    return image


def star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_character(unit: int, expression: str) -> Image.Image:
    """Bramble on a transparent square canvas of side ``unit``."""
    s = unit
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    # Ears, body, head, belly, tail.
    d.polygon([(s * .30, s * .22), (s * .36, s * .02), (s * .46, s * .18)], fill=ORANGE)
    d.polygon([(s * .54, s * .18), (s * .64, s * .02), (s * .70, s * .22)], fill=ORANGE)
    d.ellipse([s * .62, s * .55, s * .98, s * .80], fill=ORANGE)
    d.ellipse([s * .86, s * .58, s * .98, s * .72], fill=CREAM)
    d.ellipse([s * .25, s * .45, s * .75, s * .97], fill=ORANGE)
    d.ellipse([s * .36, s * .58, s * .64, s * .94], fill=CREAM)
    d.ellipse([s * .24, s * .10, s * .76, s * .56], fill=ORANGE)
    d.ellipse([s * .36, s * .32, s * .64, s * .54], fill=CREAM)
    # The distinctive mark: a white star on the forehead.
    d.polygon(star(s * .50, s * .20, s * .06), fill=(255, 255, 255))
    eye_h = {"surprised": .07, "calm": .02}.get(expression, .05)
    for ex in (.40, .60):
        d.ellipse([s * (ex - .03), s * (.30 - eye_h / 2), s * (ex + .03), s * (.30 + eye_h / 2)], fill=DARK)
    d.ellipse([s * .475, s * .38, s * .525, s * .42], fill=DARK)
    if expression == "surprised":
        d.ellipse([s * .47, s * .45, s * .53, s * .51], fill=DARK)
    else:
        width = .12 if expression == "happy" else .08
        d.arc([s * (.5 - width / 2), s * .40, s * (.5 + width / 2), s * .49], 20, 160, fill=DARK, width=max(2, s // 120))
    # Teal scarf with a hanging end.
    d.rounded_rectangle([s * .28, s * .50, s * .72, s * .58], radius=s * .03, fill=TEAL)
    d.rectangle([s * .56, s * .55, s * .64, s * .72], fill=TEAL)
    return layer


def render(shot: Shot, seed: int) -> Image.Image:
    rng = random.Random(seed)
    canvas = background(shot.background, shot.size, rng)
    unit = int(min(shot.size) * shot.scale)
    character = draw_character(unit, shot.expression).rotate(shot.tilt, resample=Image.Resampling.BICUBIC, expand=True)
    x = int(shot.size[0] * shot.center[0] - character.width / 2)
    y = int(shot.size[1] * shot.center[1] - character.height / 2)
    if canvas.mode == "RGBA":
        canvas.alpha_composite(character, (max(0, x), max(0, y)))
        return canvas
    shadow = Image.new("RGBA", character.size, (0, 0, 0, 0))
    shadow.putalpha(character.getchannel("A").point(lambda a: a // 3))
    canvas.paste(shadow.filter(ImageFilter.GaussianBlur(unit // 40 + 1)), (x + unit // 30, y + unit // 30), shadow)
    canvas.paste(character, (x, y), character)
    if shot.light != 1.0:
        canvas = canvas.point(lambda v: max(0, min(255, round(v * shot.light))))
    return canvas


def write_sample(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = []
    for index, shot in enumerate(SHOTS):
        image = render(shot, seed=index)
        path = out_dir / shot.file
        if path.suffix == ".jpg":
            if shot.file == EXIF_ROTATED:
                exif = Image.Exif()
                exif[0x0112] = 6
                # Stored rotated 90 degrees counter-clockwise; orientation 6 tells viewers to turn it back.
                image.rotate(90, expand=True).save(path, quality=88, exif=exif.tobytes())
            else:
                image.save(path, quality=88)
        else:
            image.save(path, optimize=True)
        if shot.caption_beside:
            path.with_suffix(".txt").write_text(shot.caption + "\n", encoding="utf-8")
        else:
            metadata.append({"file_name": shot.file, "text": shot.caption})
    with open(out_dir / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for row in metadata:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    write_sample(parser.parse_args().out)
