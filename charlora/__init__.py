"""Shared library of the story-shorts-character-lora pipeline.

Each stage under ``stages/`` is a thin entry point over one module here:
``images`` (preprocess), ``captions`` (caption), ``dataset`` (merge), ``base_models`` and
``tiny_model`` (the FLUX.2 Klein base model), ``training`` (train) and ``adapters`` (extract).
"""

__version__ = "0.1.0"
