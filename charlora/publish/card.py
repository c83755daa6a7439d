"""The model card (README.md on the Hub), rendered through huggingface_hub's ``ModelCard`` from
``templates/model_card.md.j2``: LoRA metadata in the YAML header (base model, license, tags, trigger
word, a widget per sample image), usage per format, training params and evaluation metrics."""

from __future__ import annotations

import json
from pathlib import Path

from charlora.models.flux2_layers import USED_BY
from charlora.params import Params
from charlora.publish.release import Release, air_for, runware_file

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md.j2"
METRICS = ("best_step", "best_score", "identity", "identity_gain", "prompt_fit", "leakage", "diversity", "best_val_loss",
           "base_val_loss", "trigger_binding")


def model_card(params: Params, release: Release, repo_id: str, version: int) -> str:
    """README.md for the Hub repo of ``release`` as version ``version``."""
    from huggingface_hub import ModelCard, ModelCardData

    widget = [{"text": prompt, "output": {"url": path}} for path, prompt in release.sample_prompts.items()]
    data = ModelCardData(license=params.publish.hf.license, base_model=release.base_model_repo,
                         tags=list(params.publish.hf.tags), instance_prompt=release.trigger, widget=widget,
                         pipeline_tag="text-to-image", library_name="mflux")
    meta = release.metadata
    training = [
        ("base model", f"{meta.get('base_model', release.base_model_repo)} (`{meta.get('base_model_name', '')}`)"),
        ("steps", meta.get("steps", "")), ("LoRA rank", meta.get("lora_rank", "")),
        ("LoRA targets", ", ".join(t["module_path"] for t in json.loads(meta.get("lora_targets", "[]")))),
        ("learning rate", meta.get("learning_rate", "")), ("resolution", meta.get("resolution", "")),
        ("seed", meta.get("seed", "")), ("training data sha256", f"`{meta.get('training_data_sha256', '')}`"),
        ("mflux / mlx", f"{meta.get('mflux_version', '')} / {meta.get('mlx_version', '')}"),
    ]
    runware = None
    if params.publish.runware.enabled:
        runware = {"file": runware_file(params, release).path_in_repo, "air": air_for(params, repo_id, version),
                   "base": release.runware_base}
    # The tiny embedded model stands in for Klein 4B Base (its LoRA only makes sense for trying the flow).
    name = params.base_model.name
    card = ModelCard.from_template(
        data, template_path=str(TEMPLATE), character=release.character, version=version, repo_id=repo_id,
        base_model_repo=release.base_model_repo, trigger=release.trigger, weight=params.publish.runware.lora_weight,
        mflux_model=name if name.startswith("flux2-klein-base") else "flux2-klein-base-4b",
        adapter=release.adapter, exports=release.exports, used_by=USED_BY, runware=runware, training=training,
        metrics=[(key, release.evaluation[key]) for key in METRICS if key in release.evaluation])
    return str(card)
