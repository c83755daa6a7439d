"""extract: adapters out of the checkpoint zips -> models/lora/<character>.safetensors (+ one per checkpoint)."""

from charlora import layout
from charlora.adapters import adapter_from_checkpoint, provenance, tensors_sha256, with_metadata
from charlora.base_models import BASE_MODELS
from charlora.cli import log, run_stage
from charlora.errors import PipelineError
from charlora.fileio import read_json, staged_dir, write_json
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
    report = {"final": None, "checkpoints": []}
    with staged_dir(layout.LORA_DIR) as out_dir:
        (out_dir / "checkpoints").mkdir()
        for checkpoint in checkpoints:
            step = checkpoint_step(checkpoint)
            data = with_metadata(adapter_from_checkpoint(checkpoint), provenance(config, fingerprint, step, trigger, base_repo))
            path = out_dir / "checkpoints" / f"{name}-step{step:06d}.safetensors"
            path.write_bytes(data)
            report["checkpoints"].append({"step": step, "file": str(layout.LORA_DIR / path.relative_to(out_dir)),
                                          "tensors_sha256": tensors_sha256(data)})
        final = out_dir / f"{name}.safetensors"
        final.write_bytes((out_dir / "checkpoints" / f"{name}-step{checkpoint_step(checkpoints[-1]):06d}.safetensors").read_bytes())
        report["final"] = {**report["checkpoints"][-1], "file": str(layout.LORA_DIR / final.name)}
    write_json(layout.METRICS_DIR / "extract.json", report)
    log("extract", f"{layout.LORA_DIR / final.name} (step {report['final']['step']}) and "
                   f"{len(checkpoints)} checkpoint adapters in {layout.LORA_DIR / 'checkpoints'}")


if __name__ == "__main__":
    run_stage("extract", main)
