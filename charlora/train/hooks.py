"""Narrow runtime hooks into mflux 0.24's trainer, each undone when its ``with`` block ends.

mflux has no callbacks for what the train stage needs to show and to get right: when each training
image has been encoded (the warm-up before the first step), when the step loop starts, each step's
loss, and the LoRA scale of a resumed run. Each hook wraps one mflux method for the duration of a
run. Pinned mflux version: if a method is gone, training still runs, without that hook's effect.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def _wrapped(owner: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
             static: bool = False) -> Iterator[bool]:
    """Replace ``owner.name`` with ``wrap(original)`` for the block; yields False if mflux has no such method."""
    original = owner.__dict__.get(name)
    if original is None:
        yield False
        return
    function = original.__func__ if isinstance(original, staticmethod) else original
    replacement = wrap(function)
    setattr(owner, name, staticmethod(replacement) if static else replacement)
    try:
        yield True
    finally:
        setattr(owner, name, original)


@contextmanager
def observe_warmup(on_encoded: Callable[[float], None], on_loop_start: Callable[[], None]) -> Iterator[None]:
    """Call ``on_encoded(seconds)`` after mflux encodes each training image, ``on_loop_start()`` when its step loop begins.

    mflux encodes every image (VAE latents, prompt embeddings) before the first step: on a CPU that
    is most of a short run, and it is no step. The hooks are ``Flux2TrainingAdapter.encode_data``
    and ``TrainingTrainer.train`` (entered once the data is encoded).
    """
    from mflux.models.common.training.trainer import TrainingTrainer
    from mflux.models.flux2.training_adapter.flux2_training_adapter import Flux2TrainingAdapter

    def encoding(original):
        def encode_data(self, *args, **kwargs):
            began = time.perf_counter()
            result = original(self, *args, **kwargs)
            on_encoded(time.perf_counter() - began)
            return result
        return encode_data

    def training(original):
        def train(*args, **kwargs):
            on_loop_start()
            return original(*args, **kwargs)
        return train

    with _wrapped(Flux2TrainingAdapter, "encode_data", encoding), _wrapped(TrainingTrainer, "train", training, static=True):
        yield


@contextmanager
def observe_steps(callback: Callable[[float], None]) -> Iterator[None]:
    """Call ``callback(loss)`` once per training step while mflux trains.

    mflux 0.24 records per-step losses only when preview monitoring is on, and previews cost
    minutes; its trainer does check each step's (already evaluated) loss with
    ``TrainingTrainer._step_is_finite``, so that check is where we listen.
    """
    from mflux.models.common.training.trainer import TrainingTrainer

    state = {"stepping": False, "interrupted": False}

    def listening(check):
        def step_is_finite(loss):
            finite = check(loss)
            state["stepping"] = True
            callback(float(loss) if finite else float("nan"))
            if state["interrupted"]:
                raise KeyboardInterrupt
            return finite
        return step_is_finite

    # While steps run, Ctrl-C stops at the next step boundary, here in our code: a KeyboardInterrupt
    # raised at a random point inside mlx/mflux can land in a finalizer, where Python only prints it
    # and training goes on. Before the first step (encoding the images), or on a second Ctrl-C, it stops at once.
    def on_sigint(signum, frame):
        if state["interrupted"] or not state["stepping"]:
            raise KeyboardInterrupt
        state["interrupted"] = True

    with _wrapped(TrainingTrainer, "_step_is_finite", listening, static=True) as hooked:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, on_sigint) if hooked and main else None
        try:
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


@contextmanager
def resumed_at_trained_scale(alpha: float | None) -> Iterator[None]:
    """Resume LoRA layers at the scale they were trained at (alpha / rank), not 1.

    mflux 0.24 trains each layer at scale alpha / rank but saves the checkpoint's adapter without
    alpha, and its resume loads that adapter at scale 1: with ``train.lora.alpha`` set, the LoRA would
    jump by rank / alpha at every resume and the run would not be the run that was asked for. After
    mflux has loaded the adapter, the training layers get their scale back. The hook is the training
    adapter's ``load_lora_adapter``, which mflux calls only to resume.
    """
    if alpha is None:
        yield
        return
    from mflux.models.common.lora.layer.linear_lora_layer import LoRALinear
    from mflux.models.flux2.training_adapter.flux2_base_training_adapter import Flux2BaseTrainingAdapter

    def rescaling(original):
        def load_lora_adapter(self, *, path):
            original(self, path=path)
            for _, module in self.transformer().named_modules():
                if isinstance(module, LoRALinear) and getattr(module, "_mflux_lora_role", None) == "train":
                    module.scale = alpha / module.lora_A.shape[1]
        return load_lora_adapter

    with _wrapped(Flux2BaseTrainingAdapter, "load_lora_adapter", rescaling):
        yield
