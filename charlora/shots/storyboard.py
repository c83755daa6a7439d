"""The storyboard: every shot of the story in order, each with its id and prompt under it.

Shots keep their aspect ratio at one row height (small renders are enlarged with nearest-neighbour,
so the pixels the model made stay visible); rows wrap at a maximum width. A shot's reference images
sit as small framed thumbnails in its lower left corner. Drawn with Pillow's own scalable font, so
the sheet is the same on every machine.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

CELL_HEIGHT = 320
MAX_WIDTH = 1400
GAP = 14
TEXT_LINES = 4  # prompt lines under each shot (longer prompts end with an ellipsis)
THUMB_HEIGHT = 56  # reference thumbnails


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines that fit ``width`` pixels; the last ends with an ellipsis if cut."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and font.getlength(f"{line} {words[0]}") <= width:
            line = f"{line} {words.pop(0)}"
        while font.getlength(line) > width and len(line) > 1:  # one word wider than the cell
            line = line[:-1]
        out.append(line)
    if words and out:
        last = out[-1]
        while last and font.getlength(last + " …") > width:
            last = last[:-1]
        out[-1] = last.rstrip() + " …"
    return out


def _fit(image: Image.Image, height: int) -> Image.Image:
    """``image`` at ``height`` pixels tall, aspect kept (nearest-neighbour when enlarging)."""
    width = max(1, round(image.width * height / image.height))
    method = Image.Resampling.NEAREST if height >= image.height else Image.Resampling.LANCZOS
    return image.convert("RGB").resize((width, height), method)


def _paste_references(sheet: Image.Image, references: list[Image.Image], x: int, bottom: int, width: int) -> None:
    """Framed thumbnails of ``references`` along the bottom left of a shot, as many as fit its ``width``."""
    left = x + 4
    for reference in references:
        thumb = _fit(reference, THUMB_HEIGHT)
        if left + thumb.width + 2 > x + width:
            break
        sheet.paste((255, 255, 255), (left - 2, bottom - THUMB_HEIGHT - 6, left + thumb.width + 2, bottom - 2))
        sheet.paste(thumb, (left, bottom - THUMB_HEIGHT - 4))
        left += thumb.width + 6


Shot = tuple[str, str, Image.Image, list[Image.Image]]  # id, prompt, image, reference images


def storyboard(shots: list[Shot], title: str, cell_height: int = CELL_HEIGHT, max_width: int = MAX_WIDTH) -> Image.Image:
    """The sheet of ``shots`` (id, prompt, image, references) in order, under a ``title`` line."""
    font = ImageFont.load_default(size=13)
    bold = ImageFont.load_default(size=15)
    line_height = 17
    text_height = 22 + TEXT_LINES * line_height
    cells = [(shot_id, prompt, _fit(image, cell_height), refs) for shot_id, prompt, image, refs in shots]
    rows: list[list[tuple[str, str, Image.Image, list[Image.Image]]]] = [[]]
    used = GAP
    for cell in cells:
        width = max(cell[2].width, 120) + GAP
        if rows[-1] and used + width > max_width:
            rows.append([])
            used = GAP
        rows[-1].append(cell)
        used += width
    sheet_width = max(GAP + sum(max(c[2].width, 120) + GAP for c in row) for row in rows)
    top = 40
    sheet = Image.new("RGB", (sheet_width, top + len(rows) * (cell_height + text_height + GAP)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 12), title, font=bold, fill=(0, 0, 0))
    for row_index, row in enumerate(rows):
        y = top + row_index * (cell_height + text_height + GAP)
        x = GAP
        for number, (shot_id, prompt, image, references) in enumerate(row):
            width = max(image.width, 120)
            sheet.paste(image, (x + (width - image.width) // 2, y))
            _paste_references(sheet, references, x + (width - image.width) // 2, y + cell_height, image.width)
            index = sum(len(r) for r in rows[:row_index]) + number + 1
            draw.text((x, y + cell_height + 4), f"{index}. {shot_id}", font=bold, fill=(0, 0, 0))
            for line_number, line in enumerate(_wrap(prompt, font, width, TEXT_LINES)):
                draw.text((x, y + cell_height + 24 + line_number * line_height), line, font=font, fill=(60, 60, 60))
            x += width + GAP
    return sheet
