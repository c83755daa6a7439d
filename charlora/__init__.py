"""story-shorts-character-lora: the library behind the DVC pipeline's stages.

Each stage script under ``stages/`` reads params, calls one entry point here and writes its
outputs. The subpackages mirror the pipeline:

=============  ==============================================================  =====================
subpackage     what it does                                                    stages
=============  ==============================================================  =====================
``data``       ``raw_files`` (what data/raw holds), ``images`` (clean the       preprocess, caption,
               pictures), ``captions`` (Florence-2, user captions, cache),      merge
               ``merge`` (mflux folder, held-out split)
``models``     ``registry`` (base models and their defaults), ``tiny`` and      base_model, and every
               ``tiny_clip`` (embedded models), ``loading`` (mflux models for   stage that loads one
               generation), ``flux2_layers`` (the block layer table),
               ``folder`` (a model folder registered with mflux), ``shipped``
               (the committed micro weights and their manifest), ``geometry``
               (sizes without loading); ``micro/`` builds the micro model
               (``make micro-model``, not a stage)
``train``      ``settings``, ``presets``, ``memory`` (the pre-flight           train (extract reads
               estimate), ``preflight``, ``guard``, ``eta``, ``mflux_config``,  its checkpoints)
               ``checkpoints`` (resume plan), ``hooks`` (into mflux's
               trainer), ``run``, ``curves`` (dvclive)
``lora``       ``safetensors`` (header, metadata, alpha), ``extract``,          extract, export
               ``keys`` and ``formats`` (key layouts, conversion), ``verify``,
               ``export``
``evaluate``   ``heldout`` (validation loss), ``prompts``, ``sampling``,        evaluate
               ``clip_metrics``, ``sheets``, ``run``
``publish``    ``release``, ``plan`` (dry run), ``manifest``, ``card``,         publish, make publish
               ``hub``, ``runware``, ``credentials``, ``retry``, ``run``
``shots``      ``story`` (the story file and its checks), ``plan`` (sizes,      shots, make shots
               seeds, cache keys), ``references``, ``cache``, ``render``
               (mflux), ``remote`` (Runware), ``storyboard``, ``run``
=============  ==============================================================  =====================

Shared by all: ``params`` (params.yaml's sections, validated by ``schema``), ``layout`` (where stages read and write,
project-folder checks), ``fileio``, ``errors`` (:class:`~charlora.errors.PipelineError`) and
``progress`` (the one progress display, and silencing mflux's own). ``machine`` says how much memory
training may use here. ``cli`` is for stage
scripts only; library code reports through :mod:`charlora.progress` or a callable it is given.
A new stage gets its own subpackage (or module) here and a thin ``stages/<stage>.py``.

Importing the package prepares mlx for this machine before anything imports mlx: on a Linux CPU it
loads an optimized BLAS for mlx's matrix products and guards mlx's shared JIT cache
(:mod:`charlora.mlx_runtime`).
"""

from charlora import mlx_runtime as _mlx_runtime

_mlx_runtime.prepare()

__version__ = "0.1.0"
