"""merge: images + captions -> data/train/<character>/ (mflux layout) and data/heldout/<character>/."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, run_stage
from charlora.data.merge import merge
from charlora.fileio import staged_dir, write_json
from charlora.params import load_params


def main() -> None:
    params = load_params()
    name = params.character.name
    with staged_dir(layout.TRAIN_ROOT) as train_root, staged_dir(layout.HELDOUT_ROOT) as heldout_root:
        (train_root / name).mkdir()
        (heldout_root / name).mkdir()
        summary = merge(layout.PROCESSED_DIR, layout.CAPTIONED_DIR, layout.PRIOR_ROOT / name, train_root / name,
                        heldout_root / name, params.merge, params.character.trigger)
    write_json(layout.METRICS_DIR / "merge.json", summary)
    log("merge", f"{summary['train_images']} training pairs and {summary['prior_images']} prior pictures in "
                 f"{layout.TRAIN_ROOT / name}, "
                 f"{summary['heldout_images']} held out in {layout.HELDOUT_ROOT / name}")


if __name__ == "__main__":
    run_stage("merge", main)
