"""`make report`: run ``notebooks/pipeline.ipynb`` headless (nbclient) in the project and write the executed copy
as one self-contained HTML file, ``reports/pipeline.html`` (every picture and plot embedded), with the executed
notebook beside it (``reports/pipeline.ipynb``). Both are gitignored.

The notebook runs as from JupyterLab: its cells run `dvc repro <stage>` (only what changed reruns), the push
cell publishes nothing unless ``PUBLISH = True`` is set in it, and the experiment cell is a dry run unless
``RUN_EXPERIMENT = True``. A failing cell stops the run; the report is still written up to that cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NOTEBOOK = Path("notebooks/pipeline.ipynb")
REPORT_DIR = Path("reports")


def execute(notebook: Path, timeout: int | None = None):
    """The notebook executed in its own folder with this interpreter's kernel; raises at the first failing cell
    (``error.notebook`` then holds the cells run so far)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    node = nbformat.read(notebook, as_version=4)
    client = NotebookClient(node, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent.resolve())}})
    try:
        client.execute()
    except CellExecutionError as error:
        error.notebook = node
        raise
    return node


def write_report(node, out_dir: Path, name: str) -> Path:
    """Write the executed notebook and its HTML (images embedded as data URIs) into ``out_dir``; returns the HTML."""
    import nbformat
    from nbconvert import HTMLExporter

    from charlora.fileio import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{name}.ipynb", nbformat.writes(node))
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(node)
    html = out_dir / f"{name}.html"
    write_text_atomic(html, body)
    return html


def main(argv: list[str] | None = None) -> int:
    """Execute the notebook and write the report; exit status 1 when a cell failed."""
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--out-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    args = parser.parse_args(argv)
    print(f"report: running {args.notebook} (each stage's `dvc repro`; only what changed reruns) ...", flush=True)
    try:
        node, failed = execute(args.notebook, args.timeout), None
    except CellExecutionError as error:
        node, failed = error.notebook, error
    html = write_report(node, args.out_dir, args.notebook.stem)
    if failed is not None:
        print(f"report: a cell failed; {html} shows the notebook up to it:\n{failed}", file=sys.stderr)
        return 1
    print(f"report: {html} ({html.stat().st_size // 1024} KB, every picture embedded) and "
          f"{args.out_dir / args.notebook.name} (the executed notebook)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
