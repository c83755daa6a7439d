"""extract: adapters out of the checkpoint zips -> models/lora/<character>.safetensors (+ one per checkpoint)."""

from charlora import layout
from charlora.adapters import adapter_from_checkpoint, provenance, tensors_sha256, trained_alpha, with_lora_alpha, with_metadata
from charlora.base_models import BASE_MODELS
from charlora.cli import log, run_stage
from charlora.errors import PipelineError
from charlora.fileio import read_json, staged_dir, write_bytes_atomic, write_json
from charlora.params import load_params
from charlora.training import RUN_SUBDIR, checkpoint_step, good_checkpoints


def main() -> None:
    params = load_params()
    name, trigger = params.character.name, params.character.trigger
    config = read_json(layout.TRAINING_DIR / "config.json")
    fingerprint = read_json(layout.TRAINING_DIR / "fingerprint.json")
    checkpoints = good_checkpoints(layout.TRAINING_DIR / RUN_SUBDIR)
    if not checkpoints:
        raise PipelineError(f"no checkpoints in {layout.TRAINING_DIR / RUN_SUBDIR}. Run training first: dvc repro train.")
    base_repo = BASE_MODELS[params.base_model.name].hf_repo
    entries = []
    checkpoints_dir = layout.LORA_DIR / "checkpoints"
    with staged_dir(checkpoints_dir) as staging:
        for checkpoint in checkpoints:
            step = checkpoint_step(checkpoint)
            adapter = with_lora_alpha(adapter_from_checkpoint(checkpoint), trained_alpha(config))
            data = with_metadata(adapter, provenance(config, fingerprint, step, trigger, base_repo))
            file_name = f"{name}-step{step:06d}.safetensors"
            (staging / file_name).write_bytes(data)
            entries.append({"step": step, "file": str(checkpoints_dir / file_name), "tensors_sha256": tensors_sha256(data)})
    final = layout.LORA_DIR / f"{name}.safetensors"
    write_bytes_atomic(final, (checkpoints_dir / f"{name}-step{entries[-1]['step']:06d}.safetensors").read_bytes())
    write_json(layout.METRICS_DIR / "extract.json", {"final": {**entries[-1], "file": str(final)}, "checkpoints": entries})
    log("extract", f"{final} (step {entries[-1]['step']}) and {len(entries)} checkpoint adapters in {checkpoints_dir}")


if __name__ == "__main__":
    run_stage("extract", main)
