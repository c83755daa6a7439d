"""evaluate: held-out loss of every checkpoint, images and CLIP metrics for the best few
-> metrics/eval.json, models/samples/ (images, contact sheets) and models/lora/<name>-best.safetensors.
The base model's pictures are cached in data/cache/base_samples."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, run_stage
from charlora.evaluate.run import run_evaluation
from charlora.fileio import read_json, staged_dir, write_json
from charlora.models.embedded import model_identity
from charlora.params import load_params
from charlora.train.curves import log_curves


def main() -> None:
    params = load_params()
    name = params.character.name
    checkpoints = read_json(layout.METRICS_DIR / "extract.json")["checkpoints"]
    with staged_dir(layout.SAMPLES_DIR) as samples_dir:
        report = run_evaluation(params, read_json(layout.TRAINING_DIR / "config.json"), checkpoints,
                                layout.HELDOUT_ROOT / name, layout.TRAIN_ROOT / name, samples_dir,
                                layout.LORA_DIR / f"{name}-best.safetensors", layout.BASE_SAMPLES_CACHE_DIR,
                                model_identity(params))
    log_curves(report["checkpoints"], layout.METRICS_DIR / "eval")
    write_json(layout.METRICS_DIR / "eval.json", report)
    log("evaluate", f"best checkpoint: step {report['best_step']} (score {report['best_score']:.4f}) -> "
                    f"{report['best_file']}; contact sheets in {layout.SAMPLES_DIR}")


if __name__ == "__main__":
    run_stage("evaluate", main)
