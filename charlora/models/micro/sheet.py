"""Contact sheets for the micro model's build: the world's pictures beside what the model draws for the same caption."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw


def side_by_side(real: list[Image.Image], generated: list[Image.Image], captions: list[str], cell: int = 128,
                 columns: int = 4) -> Image.Image:
    """Pairs (world picture | micro model) in a grid, each pair with its caption underneath."""
    text_height = 52
    pair_width = 2 * cell + 8
    rows = -(-len(captions) // columns)
    sheet = Image.new("RGB", (columns * (pair_width + 12), rows * (cell + text_height) + 22), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 4), "left: the world's picture for the caption; right: the micro model's picture for the same caption",
              fill=(0, 0, 0))
    for index, (picture, drawn, text) in enumerate(zip(real, generated, captions)):
        left = (index % columns) * (pair_width + 12) + 6
        top = (index // columns) * (cell + text_height) + 22
        sheet.paste(picture.convert("RGB").resize((cell, cell)), (left, top))
        sheet.paste(drawn.convert("RGB").resize((cell, cell)), (left + cell + 8, top))
        for line_number, line in enumerate(textwrap.wrap(text, 44)[:4]):
            draw.text((left, top + cell + 3 + 12 * line_number), line, fill=(40, 40, 40))
    return sheet
