"""caption: data/processed -> data/captioned/char_NNN.txt, trigger word first."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from collections import Counter

from charlora import layout
from charlora.cli import log, run_stage
from charlora.data.captions import caption_images
from charlora.fileio import staged_dir, write_json
from charlora.params import load_params


def main() -> None:
    params = load_params()
    with staged_dir(layout.CAPTIONED_DIR) as out_dir:
        records = caption_images(layout.PROCESSED_DIR, out_dir, layout.CAPTION_CACHE_DIR, params.caption,
                                 params.character.trigger)
        write_json(out_dir / "captions.json", [record.__dict__ for record in records])
    sources = Counter(record.source for record in records)
    write_json(layout.METRICS_DIR / "caption.json", {"images": len(records), "sources": dict(sorted(sources.items()))})
    log("caption", f"{len(records)} captions in {layout.CAPTIONED_DIR} ({', '.join(f'{n} {s}' for s, n in sorted(sources.items()))})")


if __name__ == "__main__":
    run_stage("caption", main)
