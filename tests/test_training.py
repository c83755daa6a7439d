"""train + extract on the tiny FLUX.2 Klein model: config, validation, real training, metadata, LoRA applied."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlora.errors import PipelineError
from charlora.lora.extract import adapter_from_checkpoint, provenance, trained_alpha
from charlora.lora.safetensors import read_metadata, tensors_sha256, with_lora_alpha, with_metadata
from charlora.models.registry import get_base_model
from charlora.train.checkpoints import RUN_SUBDIR, good_checkpoints
from charlora.train.mflux_config import learning_rate_line, mflux_config
from charlora.train.settings import base_model_for, check_dataset, check_model_path, resolve_settings
from tests.conftest import make_train_dir, params_with


def test_settings_take_model_defaults(project_params):
    tiny = resolve_settings(project_params, base_model_for(project_params))
    assert (tiny.resolution, tiny.epochs, tiny.double_blocks, tiny.single_blocks) == (64, 2, (0, 1), (0, 1))
    real_params = params_with(project_params, base_model={"name": "flux2-klein-base-4b"})
    real = resolve_settings(real_params, base_model_for(real_params))
    assert (real.resolution, real.epochs, real.steps, real.timestep_low, real.timestep_high) == (1024, 100, 40, 25, 40)
    assert (real.double_blocks, real.single_blocks, real.checkpoint_every, real.low_ram) == ((0, 5), (0, 20), 25, True)
    override = params_with(real_params, train={"resolution": 512}, lora={"rank": 8})
    assert resolve_settings(override, base_model_for(override)).resolution == 512


def test_config_is_mflux_schema_and_targets_every_block(project_params, tmp_path):
    from mflux.models.common.training.state.training_spec import TrainingSpec

    real_params = params_with(project_params, base_model={"name": "flux2-klein-base-4b"})
    model = get_base_model("flux2-klein-base-4b")
    settings = resolve_settings(real_params, model)
    data = make_train_dir(tmp_path / "data")
    config = mflux_config(settings, model, None, data, tmp_path / "cfg" / "config.json", tmp_path / "run", 300)
    assert config["optimizer"] == {"name": "AdamW", "learning_rate": 1e-4}  # constant: mflux's own default
    assert config["model"] == "flux2-klein-base-4b" and config["data"] == "../data"
    assert len(config["lora_layers"]["targets"]) == 12 + 2
    assert {"module_path": "single_transformer_blocks.{block}.attn.to_qkv_mlp_proj",
            "blocks": {"start": 0, "end": 20}, "rank": 16} in config["lora_layers"]["targets"]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(config))
    spec = TrainingSpec.resolve(config_path=str(tmp_path / "cfg" / "config.json"), resume_path=None, create_output_dir=False)
    assert len(spec.data) == 3 and spec.training_loop.timestep_low == 25 and spec.lora_layers.targets[0].rank == 16


def test_learning_rate_schedule_reaches_mflux_optimizer(project_params, tmp_path):
    """train.lr_warmup_steps and lr_schedule become mflux's schedule: 0 -> learning_rate over the warm-up, then cosine to 0."""
    from mflux.models.common.training.optimization.optimizer import Optimizer
    from mflux.models.common.training.state.training_spec import OptimizerSpec

    scheduled = params_with(project_params, train={"learning_rate": 1e-3, "lr_warmup_steps": 10, "lr_schedule": "cosine"})
    settings = resolve_settings(scheduled, base_model_for(scheduled))
    config = mflux_config(settings, base_model_for(scheduled), None, make_train_dir(tmp_path / "data"),
                          tmp_path / "config.json", tmp_path / "run", 110)
    assert learning_rate_line(settings) == "learning rate 0.001, warm-up 10 steps, cosine decay to 0"
    schedule = Optimizer._build_lr(OptimizerSpec(**config["optimizer"]))
    rates = [float(schedule(mx_step)) for mx_step in (0, 5, 10, 60, 110)]
    assert rates[0] == 0 and abs(rates[1] - 5e-4) < 1e-9 and abs(rates[2] - 1e-3) < 1e-9
    assert abs(rates[3] - 5e-4) < 1e-6 and rates[4] < 1e-9  # half-way down the cosine, then 0 at the run's end
    with pytest.raises(PipelineError, match=r"'train\.lr_warmup_steps' is 10, but the run has 10 steps"):
        mflux_config(settings, base_model_for(scheduled), None, tmp_path / "data", tmp_path / "config.json",
                     tmp_path / "run", 10)
    assert resolve_settings(project_params, base_model_for(project_params)).lr_schedule == \
        base_model_for(project_params).defaults.lr_schedule  # null: the model's default




def test_validation_errors(project_params, tmp_path):
    from charlora.params import BlockRangeParams

    model = base_model_for(project_params)
    cases = [
        (params_with(project_params, lora={"double_targets": ["attn.to_q", "attn.to_q"]}), "lists a target twice"),
        (params_with(project_params, lora={"single_blocks": BlockRangeParams(0, 3)}),
         r"'train\.lora\.single_blocks' .* has 1 such blocks"),
        (params_with(project_params, train={"steps": 10, "timestep_high": 12}), r"'train\.timestep_high' is 12"),
        (params_with(project_params, lora={"double_targets": [], "single_targets": []}), "both empty"),
    ]
    for params, message in cases:
        with pytest.raises(PipelineError, match=message):
            resolve_settings(params, model)
    with pytest.raises(PipelineError, match=r"base_model\.path '.*nowhere' is not a FLUX\.2 Klein model folder"):
        check_model_path(params_with(project_params, base_model={"path": str(tmp_path / "nowhere")}), tmp_path)
    with pytest.raises(PipelineError, match=r"Run `dvc repro base_model` to install it"):
        check_model_path(project_params, tmp_path / "not-built")
    real = params_with(project_params, base_model={"name": "flux2-klein-base-4b"})
    assert check_model_path(real, tmp_path / "not-built") is None  # mflux downloads it
    data = make_train_dir(tmp_path / "data")
    (data / "char_002.txt").unlink()
    with pytest.raises(PipelineError, match=r"char_002\.png has no caption"):
        check_dataset(data)
    with pytest.raises(PipelineError, match="no training images"):
        (tmp_path / "empty").mkdir()
        check_dataset(tmp_path / "empty")


@pytest.mark.slow
def test_training_writes_checkpoints_metrics_and_loss_curve(trained):
    params, root, metrics = trained
    assert metrics["steps"] == 6 and metrics["resumed_from_step"] == 0
    assert np.isfinite(metrics["final_loss"]) and metrics["seconds_per_step"] > 0 and metrics["peak_rss_mb"] > 0
    steps = [int(p.name[:7]) for p in good_checkpoints(root / "training" / RUN_SUBDIR)]
    assert steps == [3, 6]
    config = json.loads((root / "training" / "config.json").read_text())
    assert config["max_resolution"] == 32 and config["model"] == "flux2-klein-tiny"
    curve = (root / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert curve[0].split("\t")[:2] == ["step", "loss"] and len(curve) == 1 + 6


@pytest.mark.slow
def test_extract_keeps_tensors_and_adds_provenance(trained, tmp_path):
    params, root, _ = trained
    checkpoint = good_checkpoints(root / "training" / RUN_SUBDIR)[-1]
    original = adapter_from_checkpoint(checkpoint)
    config = json.loads((root / "training" / "config.json").read_text())
    fingerprint = json.loads((root / "training" / "fingerprint.json").read_text())
    stamped = with_metadata(original, provenance(config, fingerprint, 6, "brmbl", "black-forest-labs/FLUX.2-klein-base-4B"))
    path = tmp_path / "bramble.safetensors"
    path.write_bytes(stamped)
    assert tensors_sha256(stamped) == tensors_sha256(original)
    metadata = read_metadata(path)
    assert metadata["trigger_word"] == "brmbl" and metadata["steps"] == "6" and metadata["lora_rank"] == "16"
    assert metadata["base_model"] == "black-forest-labs/FLUX.2-klein-base-4B"
    assert metadata["training_data_sha256"] == fingerprint["data_sha256"] and len(metadata["params_sha256"]) == 64
    assert metadata["mflux_version"] == "0.24.0" and metadata["mlx_version"]
    targets = json.loads(metadata["lora_targets"])
    assert {"module_path": "transformer_blocks.{block}.attn.to_q", "blocks": {"start": 0, "end": 1}} in targets
    from safetensors.numpy import load_file

    tensors = load_file(path)
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in tensors
    assert metadata["lora_alpha"] == "null" and not any(k.endswith(".alpha") for k in tensors)

    # With train.lora.alpha the adapter gets one .alpha scalar per layer; the trained tensors stay as they were.
    config["lora_layers"]["targets"] = [{**t, "alpha": 32.0} for t in config["lora_layers"]["targets"]]
    assert trained_alpha(config) == 32.0
    stamped = with_metadata(with_lora_alpha(original, trained_alpha(config)),
                            provenance(config, fingerprint, 6, "brmbl", "black-forest-labs/FLUX.2-klein-base-4B"))
    path.write_bytes(stamped)
    assert read_metadata(path)["lora_alpha"] == "32.0"
    with_alpha = load_file(path)
    pairs = sorted(k.removesuffix(".lora_A.weight") for k in tensors if k.endswith(".lora_A.weight"))
    assert sorted(k.removesuffix(".alpha") for k in with_alpha if k.endswith(".alpha")) == pairs
    assert all(with_alpha[f"{p}.alpha"] == np.float32(32.0) for p in pairs)
    assert all(np.array_equal(with_alpha[k], v) for k, v in tensors.items())
    config["lora_layers"]["targets"][0]["alpha"] = 8.0
    with pytest.raises(PipelineError, match="several LoRA alphas"):
        trained_alpha(config)


@pytest.mark.slow
def test_adapter_loads_into_mflux_and_changes_the_output(trained, tmp_path, tiny_flux2):
    """The extracted adapter goes through mflux's LoRA loader and moves the transformer's output."""
    import mlx.core as mx

    from charlora.models.loading import load_flux2

    params, root, _ = trained
    adapter = tmp_path / "a.safetensors"
    adapter.write_bytes(adapter_from_checkpoint(good_checkpoints(root / "training" / RUN_SUBDIR)[-1]))

    def transformer_output(lora_scale, lora=adapter):
        model = load_flux2("flux2-klein-tiny", tiny_flux2, params.tiny_model,
                           lora_paths=[lora] if lora_scale is not None else None,
                           lora_scales=[lora_scale] if lora_scale is not None else None)
        key = mx.random.key(0)
        hidden = mx.random.normal((1, 4, 128), key=key)
        text = mx.random.normal((1, 8, 96), key=mx.random.key(1))
        img_ids = mx.zeros((1, 4, 4), dtype=mx.int32)
        txt_ids = mx.zeros((1, 8, 4), dtype=mx.int32)
        out = model.transformer(hidden_states=hidden, encoder_hidden_states=text, timestep=mx.array([0.5]),
                                img_ids=img_ids, txt_ids=txt_ids, guidance=None)
        return np.array(out.astype(mx.float32))

    base, with_lora, off = transformer_output(None), transformer_output(1.0), transformer_output(0.0)
    assert np.abs(with_lora - base).max() > 1e-5, "the trained LoRA must change the transformer's output"
    assert np.allclose(off, base, atol=1e-6), "at scale 0 the LoRA must change nothing"

    # Trained with alpha = 2 * rank (scale 2): extract writes .alpha per layer, and mflux applies scale 2.
    with_alpha = tmp_path / "alpha.safetensors"
    with_alpha.write_bytes(with_lora_alpha(adapter.read_bytes(), 32.0))
    doubled = transformer_output(2.0)
    assert np.abs(doubled - with_lora).max() > 1e-5
    assert np.allclose(transformer_output(1.0, with_alpha), doubled, atol=1e-6)


def test_run_plan_resumes_only_an_unfinished_run_with_the_same_fingerprint(tmp_path):
    from charlora.fileio import write_json
    from charlora.train.checkpoints import plan_run

    training = tmp_path / "training"
    assert plan_run(training, "abc", 10).reason == "no earlier run: starting fresh"
    checkpoints = training / RUN_SUBDIR / "checkpoints"
    checkpoints.mkdir(parents=True)
    write_json(training / "fingerprint.json", {"fingerprint": "abc"})
    assert "left no checkpoint" in plan_run(training, "abc", 10).reason
    import zipfile

    with zipfile.ZipFile(checkpoints / "0000004_checkpoint.zip", "w") as archive:
        archive.writestr("checkpoint.json", "{}")
    (checkpoints / "0000008_checkpoint.zip").write_bytes(b"PK\x03\x04 cut short by a kill")
    plan = plan_run(training, "abc", 10)
    assert plan.resume_from == checkpoints / "0000004_checkpoint.zip" and "step 4" in plan.reason
    assert not (checkpoints / "0000008_checkpoint.zip").exists(), "an incomplete checkpoint is removed"
    changed = plan_run(training, "def", 10)
    assert changed.resume_from is None and changed.reason.startswith("params or training data changed")
    assert plan_run(training, "abc", 4).resume_from is None  # that run had finished: train again
