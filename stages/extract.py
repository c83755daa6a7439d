"""extract: adapters out of the checkpoint zips -> models/lora/<character>.safetensors (+ one per checkpoint)."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, reporter, run_stage
from charlora.fileio import write_json
from charlora.lora.extract import extract_adapters
from charlora.params import load_params


def main() -> None:
    params = load_params()
    metrics = extract_adapters(params, layout.TRAINING_DIR, layout.LORA_DIR, reporter("extract"))
    write_json(layout.METRICS_DIR / "extract.json", metrics)
    log("extract", f"{metrics['final']['file']} (step {metrics['final']['step']}) and {len(metrics['checkpoints'])} "
                   f"checkpoint adapters in {layout.LORA_DIR / 'checkpoints'}")


if __name__ == "__main__":
    run_stage("extract", main)
