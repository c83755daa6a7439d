"""base_model: build the embedded tiny FLUX.2 Klein model (models/base/flux2-klein-tiny) and the
tiny CLIP that evaluate uses offline (models/base/clip-tiny).

It is always built (seconds) so that the default pipeline runs offline; with a real base model
(`base_model.name: flux2-klein-base-4b`) the train stage ignores it and mflux loads the real one.
"""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from charlora import layout
from charlora.cli import log, run_stage
from charlora.fileio import staged_dir
from charlora.params import load_params
from charlora.models.tiny_clip import build_tiny_clip
from charlora.models.tiny import build_tiny_model


def main() -> None:
    params = load_params()
    with staged_dir(layout.TINY_MODEL_DIR) as out_dir:
        description = build_tiny_model(params.tiny_model, out_dir)
    with staged_dir(layout.TINY_CLIP_DIR) as out_dir:
        build_tiny_clip(out_dir, seed=params.tiny_model.seed)
    log("base_model", f"tiny FLUX.2 Klein model ({description['transformer']['num_layers']} double + "
                      f"{description['transformer']['num_single_layers']} single blocks, random weights) "
                      f"written to {layout.TINY_MODEL_DIR}; tiny CLIP in {layout.TINY_CLIP_DIR}")


if __name__ == "__main__":
    run_stage("base_model", main)
