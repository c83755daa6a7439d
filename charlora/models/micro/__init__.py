"""The micro FLUX.2 Klein model's build (``make micro-model``): pretraining on the cartoon world.

The embedded default base model: mflux's FLUX.2 Klein classes at micro size, pretrained on
:mod:`charlora.world` so that the default run shows a character being learned. The shipped
weights live in ``models/micro/`` with a sha256 manifest (:mod:`charlora.models.shipped`); the
pipeline registers the folder with mflux through :mod:`charlora.models.folder`. Nothing here runs
in a pipeline stage: these modules build the weights (``tools/build_micro_model.py``).
"""
