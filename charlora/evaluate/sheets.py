"""Contact sheets: sample images in a grid, one row per checkpoint (or model), prompts under the images."""

from __future__ import annotations

from typing import Any

from charlora.evaluate.sampling import Sample


def contact_sheet(rows: list[tuple[str, list[Sample]]], cell: int = 160) -> Any:
    """A grid: one row per (label, samples), each image with a short prompt label under it."""
    from PIL import Image, ImageDraw

    columns = max(len(samples) for _, samples in rows)
    label_width, text_height = 110, 28
    sheet = Image.new("RGB", (label_width + columns * cell, len(rows) * (cell + text_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, (label, samples) in enumerate(rows):
        top = row * (cell + text_height)
        draw.text((6, top + cell // 2), label[:16], fill=(0, 0, 0))
        for column, sample in enumerate(samples):
            left = label_width + column * cell
            sheet.paste(sample.image.convert("RGB").resize((cell, cell)), (left, top))
            draw.text((left + 4, top + cell + 4), sample.prompt[:26], fill=(40, 40, 40))
    return sheet
