"""preprocess: data/raw -> data/processed/char_NNN.png (+ manifest), rejects to data/rejected."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from pathlib import Path

from charlora import layout
from charlora.cli import log, run_stage
from charlora.data.images import preprocess
from charlora.fileio import staged_dir, write_json
from charlora.params import load_params


def main() -> None:
    params = load_params()
    with staged_dir(layout.PROCESSED_DIR) as out_dir, staged_dir(layout.REJECTED_DIR) as rejected_dir:
        report = preprocess(layout.RAW_DIR, out_dir, rejected_dir, params.preprocess, project_root=Path.cwd())
    write_json(layout.METRICS_DIR / "preprocess.json", report)
    for warning in report["warnings"]:
        log("preprocess", f"warning: {warning}")
    for reject in report["rejects"]:
        where = f"copy in {layout.REJECTED_DIR}" if reject["quarantined"] else "not read, not copied"
        log("preprocess", f"rejected {reject['source']}: {reject['reason']} ({where})")
    log("preprocess", f"{report['accepted']} of {report['raw_files']} images written to {layout.PROCESSED_DIR}; "
                      f"report in {layout.METRICS_DIR / 'preprocess.json'}")


if __name__ == "__main__":
    run_stage("preprocess", main)
