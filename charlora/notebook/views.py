"""What the sections put in a cell: tables (pandas, ``text/html``), pictures and plots (``image/png``), and the
one line a section prints instead when its stage has not run.

Pictures are shown as PNG bytes (a sheet drawn with PIL, a matplotlib figure rendered off-screen), never
as links to files, so an exported report (`make report`) carries every picture in one HTML file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from charlora.fileio import read_json

THUMBNAIL = 96  # px, long side of a thumbnail in a table
CELL = 160  # px, long side of a picture in a sheet


def display(*objects: Any) -> None:
    """IPython's display (imported late: the module's helpers are also used and tested outside a kernel)."""
    from IPython.display import display as ipython_display

    ipython_display(*objects)


def missing(root: Path, stage: str, *paths: str) -> bool:
    """Print one line and return True when a stage's outputs are absent (the stage has not run, or the project
    has no such stage yet); return False when every path exists."""
    from charlora.notebook.commands import stages

    absent = [path for path in paths if not (root / path).exists()]
    if not absent:
        return False
    if stage not in stages(root):
        print(f"{stage}: this project's dvc.yaml has no '{stage}' stage; nothing to show.")
    else:
        print(f"{stage}: nothing to show yet ({', '.join(absent)} missing): run nb.repro({stage!r}) first.")
    return True


def read(root: Path, path: str) -> Any:
    """A JSON file of the project."""
    return read_json(root / path)


def table(rows: Iterable[dict] | dict, index: str | None = None, title: str | None = None) -> None:
    """Show rows (dicts) as a pandas table (``text/html``); a dict is shown as a two-column key/value table."""
    import pandas as pd

    if isinstance(rows, dict):
        frame = pd.DataFrame({"value": [_cell(v) for v in rows.values()]}, index=pd.Index(list(rows), name=index or ""))
    else:
        frame = pd.DataFrame([{k: _cell(v) for k, v in row.items()} for row in rows])
        if index is not None and not frame.empty:
            frame = frame.set_index(index)
        frame = frame.astype(object).where(frame.notna(), "")  # a value a row lacks is an empty cell, not NaN
    if title:
        print(title)
    show_frame(frame)


def show_frame(frame: Any) -> None:
    """Display a DataFrame whole: every row and column, no cell cut short (reasons, captions, URLs)."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", None, "display.max_rows", 1000, "display.max_columns", 100):
        display(frame)


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested dict as one level with dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value: Any) -> Any:
    """Lists and dicts as short text, so a table cell holds one value."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return value


def html_table(rows: Sequence[dict], images: Sequence[str] = (), title: str | None = None) -> None:
    """Show rows as an HTML table (``text/html``) whose ``images`` columns hold picture paths (or lists of them),
    drawn as embedded thumbnails; every other cell is escaped text."""
    from IPython.display import HTML

    columns = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if column in images:
                paths = value if isinstance(value, (list, tuple)) else [value]
                cells.append("<td>" + " ".join(img_tag(Path(p)) for p in paths if p) + "</td>")
            else:
                cells.append(f'<td style="text-align:left">{html.escape(str(_cell(value)))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    display(HTML(f'<table class="dataframe">{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'))


def open_picture(path: Path, size: int) -> Image.Image:
    """A picture file as an RGB thumbnail at most ``size`` px on its long side (large JPEGs decoded at reduced size)."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that is enough
        image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def img_tag(path: Path, size: int = THUMBNAIL) -> str:
    """An ``<img>`` holding a thumbnail of ``path`` as an embedded PNG (a data URI)."""
    data = base64.b64encode(png_bytes(open_picture(path, size))).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}" title="{html.escape(path.name)}"/>'


def picture(path_or_png: Path | bytes, title: str | None = None) -> None:
    """Show a PNG (a file of the project, or bytes) as ``image/png``, with a title line above it."""
    from IPython.display import Image as IPythonImage

    if title:
        print(title)
    data = path_or_png if isinstance(path_or_png, bytes) else Path(path_or_png).read_bytes()
    display(IPythonImage(data=data, format="png"))


def sheet(cells: Sequence[tuple[Sequence[Image.Image], Sequence[str]]], columns: int = 4, cell: int = CELL) -> bytes:
    """A grid of cells as PNG bytes; each cell is one or more pictures side by side with text lines under them."""
    font = ImageFont.load_default(size=11)
    line_height = 14
    width = max(len(pictures) for pictures, _ in cells) * cell
    lines = max(len(text) for _, text in cells)
    cell_height = cell + 6 + lines * line_height
    rows = -(-len(cells) // columns)
    canvas = Image.new("RGB", (min(columns, len(cells)) * (width + 8), rows * (cell_height + 8)), "white")
    draw = ImageDraw.Draw(canvas)
    for number, (pictures, text) in enumerate(cells):
        left, top = (number % columns) * (width + 8), (number // columns) * (cell_height + 8)
        for offset, image in enumerate(pictures):
            copy = image.copy()
            copy.thumbnail((cell, cell))
            canvas.paste(copy, (left + offset * cell + (cell - copy.width) // 2, top + (cell - copy.height) // 2))
        for row, line in enumerate(text):
            draw.text((left + 2, top + cell + 4 + row * line_height), _fit(draw, line, font, width - 4), fill=(30, 30, 30),
                      font=font)
    return png_bytes(canvas)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def figure_png(figure: Any) -> bytes:
    """A matplotlib figure rendered off-screen (no pyplot, whatever the kernel's backend) as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def new_figure(columns: int = 1, width: float = 5.0, height: float = 3.2) -> tuple[Any, list]:
    """A matplotlib figure (not registered with pyplot) and its ``columns`` axes in one row."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height))
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)
