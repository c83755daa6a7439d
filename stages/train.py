"""train: data/train/<character> -> models/training (mflux config, checkpoints), metrics/train.json."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, run_stage
from charlora.fileio import write_json
from charlora.params import load_params
from charlora.train.run import train


def main() -> None:
    params = load_params()
    metrics = train(params, layout.TRAIN_ROOT / params.character.name, layout.TRAINING_DIR,
                    layout.METRICS_DIR / "train")
    write_json(layout.METRICS_DIR / "train.json", metrics)
    log("train", f"done: {metrics['steps']} steps, final loss {metrics['final_loss']}, "
                 f"{metrics['seconds_per_step']} s/step; checkpoints in {layout.TRAINING_DIR}/run/checkpoints")


if __name__ == "__main__":
    run_stage("train", main)
