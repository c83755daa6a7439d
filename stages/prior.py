"""prior: the base model's pictures for the training captions without the trigger word -> data/prior/<character>/
(prior preservation; merge puts them beside the character's pictures). Cached in data/cache/prior."""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
from functools import partial

from charlora import layout
from charlora.cli import log, run_stage
from charlora.data.prior import generate_priors, plan_priors, resolve_prior
from charlora.fileio import staged_dir, write_json
from charlora.models.embedded import model_identity
from charlora.models.loading import load_flux2
from charlora.params import load_params
from charlora.train.settings import base_model_for, check_model_path


def main() -> None:
    params = load_params()
    model = base_model_for(params)
    prior = resolve_prior(params, model)
    name = params.character.name
    with staged_dir(layout.PRIOR_ROOT) as prior_root:
        (prior_root / name).mkdir()
        pictures = plan_priors(layout.PROCESSED_DIR, layout.CAPTIONED_DIR, params.character.trigger, params.prior,
                               prior.per_image, prior.resolution) if prior.per_image else []
        summary = generate_priors(
            pictures, prior_root / name, layout.PRIOR_CACHE_DIR, model_identity(params), prior.steps, prior.guidance,
            partial(load_flux2, model.name, check_model_path(params), params.tiny_model), workers=prior.workers)
    write_json(layout.METRICS_DIR / "prior.json", {"per_image": prior.per_image, **summary})
    if not pictures:
        log("prior", f"prior preservation is off for {model.name} (prior.per_image 0); nothing to generate")
    else:
        log("prior", f"{summary['pictures']} prior pictures ({summary['generated']} generated, {summary['cached']} from the "
                     f"cache) in {layout.PRIOR_ROOT / name}")


if __name__ == "__main__":
    run_stage("prior", main)
