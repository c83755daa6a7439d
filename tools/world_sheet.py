"""Contact sheets of the cartoon world (charlora.world), for the README and for eyeballing.

    python tools/world_sheet.py [--count 32] [--seed 0] [--size 128] [--out docs/world_sheet.png]
    python tools/world_sheet.py --bramble [--out docs/bramble_sheet.png]

The first form draws ``count`` sampled world images with their captions under them; the second
draws the 40 shots of the sample character (tools/make_sample_character.py) as thumbnails, with
the captions the pipeline gets (trigger word first).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from charlora.world import caption, render, sample_specs  # noqa: E402

FONT_SIZE = 11
PAD = 6


def sheet(tiles: list[tuple[Image.Image, str]], columns: int, cell: int) -> Image.Image:
    """Tiles (each at most ``cell`` px on a side) in a grid, each with its wrapped caption under it."""
    font = ImageFont.load_default(FONT_SIZE)
    chars = max(10, int(cell / (FONT_SIZE * 0.52)))
    wrapped = [textwrap.wrap(text, chars) for _, text in tiles]
    text_h = max(len(lines) for lines in wrapped) * (FONT_SIZE + 2)
    cell_w, cell_h = cell + 2 * PAD, cell + text_h + 3 * PAD
    rows = -(-len(tiles) // columns)
    out = Image.new("RGB", (columns * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for index, ((image, _), lines) in enumerate(zip(tiles, wrapped)):
        x0, y0 = (index % columns) * cell_w + PAD, (index // columns) * cell_h + PAD
        if image.mode == "RGBA":
            backdrop = Image.new("RGB", image.size, (200, 200, 200))
            check = max(4, image.width // 16)
            for y in range(0, image.height, check):
                for x in range((y // check) % 2 * check, image.width, 2 * check):
                    backdrop.paste((235, 235, 235), (x, y, x + check, y + check))
            backdrop.paste(image, (0, 0), image)
            image = backdrop
        out.paste(image, (x0 + (cell - image.width) // 2, y0 + (cell - image.height) // 2))
        for k, line in enumerate(lines):
            draw.text((x0, y0 + cell + PAD + k * (FONT_SIZE + 2)), line, fill=(30, 30, 30), font=font)
    return out


def world_tiles(count: int, seed: int, size: int) -> list[tuple[Image.Image, str]]:
    return [(render(spec, (size, size)), caption(spec)) for spec in sample_specs(count, seed)]


def bramble_tiles(size: int) -> list[tuple[Image.Image, str]]:
    from make_sample_character import SHOTS, TRIGGER, render_shot

    tiles = []
    for shot in SHOTS:
        scale = size / max(shot.size)
        thumb = (max(1, round(shot.size[0] * scale)), max(1, round(shot.size[1] * scale)))
        tiles.append((render_shot(shot, thumb), f"{shot.file}: {TRIGGER}, {shot.caption}"))
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--bramble", action="store_true", help="the 40 sample character shots instead of the world")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.bramble:
        tiles, out = bramble_tiles(max(args.size, 160)), args.out or Path("docs/bramble_sheet.png")
        columns = min(args.columns, 7)
    else:
        tiles, out = world_tiles(args.count, args.seed, args.size), args.out or Path("docs/world_sheet.png")
        columns = args.columns
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet(tiles, columns, max(args.size, 160) if args.bramble else args.size).save(out, optimize=True)
    print(f"{out}: {len(tiles)} images")


if __name__ == "__main__":
    main()
