"""base_model: make the embedded base model ready in models/base/ (the micro model's shipped weights checked
and installed, or the tiny model built); a real base model needs nothing here."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, run_stage
from charlora.models.embedded import prepare_base_model
from charlora.params import load_params


def main() -> None:
    prepare_base_model(load_params(), layout.BASE_MODELS_DIR, lambda message: log("base_model", message))


if __name__ == "__main__":
    run_stage("base_model", main)
