"""Train within the machine: machine readings, memory presets, the pre-flight estimate, the refusal and train.force.

Machines are simulated by passing readings (what `sysctl`, `nvidia-smi` and /proc/meminfo would say) or a
MachineMemory value; nothing in the project is patched. Estimates use the real base models' sizes from
mflux's registry (counted without loading a weight).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

from charlora.errors import PipelineError
from charlora.machine import GB, MachineMemory, MachineReadings, machine_memory
from charlora.models.geometry import model_sizes, stored_bytes
from charlora.models.registry import get_base_model
from charlora.train.eta import estimate_time
from charlora.train.memory import Backend, estimate_memory, square_workload, training_pixels
from charlora.train.preflight import FALLBACK, check_quantize, plan_memory
from charlora.train.presets import KLEIN_4B, KLEIN_9B, PRESET_NAMES, presets_for
from charlora.train.settings import resolve_settings
from tests.conftest import params_with

REAL = ("flux2-klein-base-4b", "flux2-klein-base-9b")
METAL = Backend("metal", 2)
MEMINFO = "MemTotal:       24684084 kB\nMemFree:        18579140 kB\nMemAvailable:   23480264 kB\n"


def mac(gb: float) -> MachineMemory:
    return machine_memory(MachineReadings("Darwin", "Device(gpu, 0)", str(int(gb * GB)), None, None))


NOT_DETECTED = machine_memory(MachineReadings("Darwin", "Device(gpu, 0)", None, None, None))


@functools.cache
def sizes_of(name: str):
    if name == "flux2-klein-tiny":
        from charlora.models.tiny import register_tiny_model
        from tests.conftest import fixture_params

        register_tiny_model(fixture_params().tiny_model)
    return model_sizes(name, get_base_model(name).mflux_name, None)


def estimator(name: str, backend: Backend = METAL, images: int = 20):
    return lambda settings: estimate_memory(sizes_of(name), settings, square_workload(images, settings.resolution), backend)


def for_model(params, name, **train):
    return params_with(params, base_model={"name": name}, train=train)


# -- what the machine says -------------------------------------------------------------------------------

def test_macos_reads_hw_memsize_and_keeps_a_quarter_for_the_system():
    memory = mac(32)
    assert (memory.kind, memory.total_bytes, memory.usable_bytes) == ("apple", 32 * GB, 24 * GB)
    assert "sysctl hw.memsize" in memory.describe() and "24.0 GB usable" in memory.describe()


def test_nvidia_reads_the_cards_memory_when_mlx_runs_on_the_gpu():
    memory = machine_memory(MachineReadings("Linux", "Device(gpu, 0)", None, "24564\n", MEMINFO))
    assert memory.kind == "nvidia" and memory.total_bytes == 24564 << 20
    assert memory.usable_bytes == memory.total_bytes - int(memory.total_bytes * 0.1)
    on_cpu = machine_memory(MachineReadings("Linux", "Device(cpu, 0)", None, "24564\n", MEMINFO))
    assert on_cpu.kind == "linux-cpu", "an mlx CPU build trains in RAM even where a GPU answers"


def test_linux_cpu_reads_memavailable():
    memory = machine_memory(MachineReadings("Linux", "Device(cpu, 0)", None, None, MEMINFO))
    assert memory.kind == "linux-cpu" and memory.total_bytes == 23480264 * 1024
    assert memory.usable_bytes == int(23480264 * 1024 * 0.9)


@pytest.mark.parametrize("readings", [
    MachineReadings("Darwin", "Device(gpu, 0)", None, None, None),          # sysctl did not answer
    MachineReadings("Darwin", "Device(gpu, 0)", "not a number", None, None),
    MachineReadings("Linux", "Device(gpu, 0)", None, None, MEMINFO),        # nvidia-smi missing
    MachineReadings("Linux", "Device(cpu, 0)", None, None, "MemTotal: 1 kB\n"),
    MachineReadings("Windows", "Device(cpu, 0)", None, None, None),
])
def test_undetectable_memory_is_unknown_and_says_why(readings):
    memory = machine_memory(readings)
    assert not memory.known and memory.kind == "unknown" and memory.source
    assert memory.describe().startswith("memory not detected")


# -- presets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, table", [("flux2-klein-base-4b", KLEIN_4B), ("flux2-klein-base-9b", KLEIN_9B)])
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_each_preset_sets_its_fields_for_the_real_models(project_params, name, table, preset):
    params = for_model(project_params, name)
    settings = resolve_settings(params, get_base_model(name), presets_for(name)[preset], preset)
    expected = table[preset]
    assert (settings.quantize, settings.gradient_checkpointing, settings.low_ram, settings.resolution,
            settings.batch_size, settings.cache_limit_gb, settings.preset) == (
        expected.quantize, expected.gradient_checkpointing, expected.low_ram, expected.resolution,
        expected.batch_size, expected.cache_limit_gb, preset)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_small_models_keep_their_own_defaults_in_every_preset(project_params, preset):
    model = get_base_model("flux2-klein-tiny")
    with_preset = resolve_settings(project_params, model, presets_for(model.name)[preset], preset)
    assert replace(with_preset, preset="none") == resolve_settings(project_params, model)
    assert presets_for("flux2-klein-micro")[preset] == presets_for(model.name)[preset]


def test_presets_fit_a_mac_of_their_size_with_a_margin(project_params):
    """Each 4B/9B preset's estimate stays within a machine of its size (9B 16gb is the one tight exception)."""
    for name in REAL:
        params = for_model(project_params, name)
        for preset, table in presets_for(name).items():
            estimate = estimator(name)(resolve_settings(params, get_base_model(name), table, preset))
            share = estimate.total_bytes / mac(int(preset[:-2])).usable_bytes
            assert share <= (1.0 if (name, preset) == ("flux2-klein-base-9b", "16gb") else 0.85), (name, preset, share)


def test_explicit_values_override_the_preset_and_null_takes_it(project_params):
    name = "flux2-klein-base-4b"
    params = for_model(project_params, name, resolution=512, quantize=0, batch_size=2)
    settings = resolve_settings(params, get_base_model(name), KLEIN_4B["16gb"], "16gb")
    assert (settings.resolution, settings.quantize, settings.batch_size) == (512, None, 2)
    assert (settings.gradient_checkpointing, settings.low_ram, settings.cache_limit_gb) == (True, True, 1)
    params = for_model(project_params, name, gradient_checkpointing=False, low_ram=False, cache_limit_gb=8.0, quantize=8)
    settings = resolve_settings(params, get_base_model(name), KLEIN_4B["16gb"], "16gb")
    assert (settings.gradient_checkpointing, settings.low_ram, settings.cache_limit_gb, settings.quantize) == (False, False, 8.0, 8)
    plain = resolve_settings(for_model(project_params, name), get_base_model(name))
    assert (plain.quantize, plain.gradient_checkpointing, plain.resolution, plain.batch_size, plain.preset) == (
        None, False, 1024, 1, "none")


# -- auto ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, gb, preset", [
    ("flux2-klein-base-4b", 16, "16gb"), ("flux2-klein-base-4b", 24, "24gb"), ("flux2-klein-base-4b", 36, "32gb"),
    ("flux2-klein-base-4b", 48, "48gb"), ("flux2-klein-base-4b", 128, "64gb"),
    ("flux2-klein-base-9b", 16, "16gb"), ("flux2-klein-base-9b", 24, "24gb"), ("flux2-klein-base-9b", 64, "64gb"),
])
def test_auto_takes_the_largest_preset_for_the_machines_size_that_fits(project_params, name, gb, preset):
    plan = plan_memory(for_model(project_params, name), get_base_model(name), mac(gb), estimator(name))
    assert plan.preset == preset and plan.fits
    assert plan.reason.startswith("auto: the largest preset for this machine's size whose estimate fits")
    assert f"{gb:.1f} GB unified" in plan.reason


def test_auto_steps_down_when_the_presets_estimate_does_not_fit(project_params):
    """A 48 GB Mac whose params ask for 832 px without checkpointing: the 48gb and 32gb estimates do not fit, 24gb's does."""
    name = "flux2-klein-base-4b"
    params = for_model(project_params, name, gradient_checkpointing=False, resolution=832)
    plan = plan_memory(params, get_base_model(name), mac(48), estimator(name))
    assert plan.candidates["32gb"].total_bytes > mac(48).usable_bytes >= plan.candidates["24gb"].total_bytes
    assert plan.preset == "24gb" and plan.settings.quantize == 8 and not plan.settings.gradient_checkpointing


def test_auto_on_an_nvidia_card_and_a_linux_cpu(project_params):
    name = "flux2-klein-base-9b"
    card = machine_memory(MachineReadings("Linux", "Device(gpu, 0)", None, "24564", None))
    plan = plan_memory(for_model(project_params, name), get_base_model(name), card, estimator(name, Backend("cuda", 2)))
    assert plan.preset == "24gb" and "GPU memory (nvidia-smi" in plan.reason  # presets for bigger machines are not considered
    ram = machine_memory(MachineReadings("Linux", "Device(cpu, 0)", None, None, MEMINFO))
    tiny = "flux2-klein-tiny"
    plan = plan_memory(for_model(project_params, tiny), get_base_model(tiny), ram, estimator(tiny, Backend("cpu", 4)))
    assert plan.preset == "16gb" and "fits every preset" in plan.reason and plan.fits  # 22.4 GB available: a 16 GB machine


def test_auto_without_a_memory_reading_falls_back_to_the_conservative_preset(project_params):
    name = "flux2-klein-base-4b"
    plan = plan_memory(for_model(project_params, name), get_base_model(name), NOT_DETECTED, estimator(name))
    assert plan.preset == FALLBACK == "16gb" and "not detected" in plan.reason
    assert plan.budget_bytes == 12 * GB and plan.fits  # checked against a Mac of the preset's size
    none = plan_memory(for_model(project_params, name, preset="none"), get_base_model(name), NOT_DETECTED, estimator(name))
    assert none.preset == "none" and none.fits is None and none.budget_bytes is None


# -- refusal and force -----------------------------------------------------------------------------------

def test_a_preset_too_big_for_the_machine_is_refused_with_what_fits(project_params):
    name = "flux2-klein-base-4b"
    params = for_model(project_params, name, preset="32gb")
    with pytest.raises(PipelineError) as refused:
        plan_memory(params, get_base_model(name), mac(16), estimator(name))
    message = str(refused.value)
    assert "with memory preset 32gb would need about 19." in message and "this machine can give training 12.0 GB" in message
    assert "16.0 GB unified memory (macOS sysctl hw.memsize)" in message
    assert "Presets that fit: 16gb (8." in message and "4-bit, gradient checkpointing, low_ram, 1024 px" in message
    assert "train.force: true" in message


def test_explicit_values_that_overflow_are_named_in_the_refusal(project_params):
    name = "flux2-klein-base-4b"
    params = for_model(project_params, name, quantize=0, resolution=1024)
    with pytest.raises(PipelineError, match=r"No preset fits.*explicit train values \(quantize: 0, resolution: 1024\) "
                                            r"override every preset"):
        plan_memory(params, get_base_model(name), mac(16), estimator(name))


def test_a_model_no_preset_fits_stops_with_the_numbers(project_params):
    name = "flux2-klein-base-9b"
    with pytest.raises(PipelineError, match=r"No preset fits: even the smallest, 16gb, needs about 11\.\d GB "
                                            r"\(4-bit, gradient checkpointing, low_ram, 512 px"):
        plan_memory(for_model(project_params, name), get_base_model(name), mac(8), estimator(name))


def test_force_goes_ahead_with_the_numbers(project_params):
    name = "flux2-klein-base-9b"
    plan = plan_memory(for_model(project_params, name, force=True), get_base_model(name), mac(8), estimator(name))
    assert plan.preset == "16gb" and plan.fits is False
    assert any("does not fit, going on because train.force is set" in line for line in plan.start_lines(10))


def test_start_lines_name_preset_estimate_settings_and_time(project_params):
    name = "flux2-klein-base-4b"
    model = get_base_model(name)
    plan = plan_memory(for_model(project_params, name), model, mac(24), estimator(name))
    sizes = sizes_of(name)
    plan = replace(plan, time=estimate_time(sizes, plan.settings, square_workload(20, 1024), METAL))
    lines = plan.start_lines(2000)
    assert lines[0].startswith("memory preset 24gb (auto: the largest preset for this machine's size whose estimate fits")
    assert lines[1].startswith("estimated peak 12.") and "of 18.0 GB usable" in lines[1] and "weights 8.0" in lines[1]
    assert lines[2] == "settings: 8-bit, gradient checkpointing, low_ram, 1024 px, batch 1, mlx cache <= 2 GB"
    assert lines[3].startswith("expected time: about ") and "2000 steps" in lines[3] and "assumed, not measured" in lines[3]


# -- the estimate's parts ---------------------------------------------------------------------------------

def base_settings(project_params, name="flux2-klein-base-4b", **changes):
    settings = resolve_settings(for_model(project_params, name), get_base_model(name))
    return replace(settings, **changes)


def parts(project_params, backend=METAL, images=20, **changes):
    settings = base_settings(project_params, **changes)
    return estimate_memory(sizes_of("flux2-klein-base-4b"), settings, square_workload(images, settings.resolution), backend)


def test_weights_follow_the_real_parameter_counts_and_quantization(project_params):
    sizes = sizes_of("flux2-klein-base-4b")
    assert round(sizes.transformer.total / 1e9, 2) == 3.88 and round(sizes.text_encoder.total / 1e9, 2) == 4.02
    full = parts(project_params).parts
    assert full["weights_transformer"] == sizes.transformer.total * 2  # bfloat16 as downloaded
    eight, four = parts(project_params, quantize=8).parts, parts(project_params, quantize=4).parts
    for key in ("weights_transformer", "weights_text_encoder"):
        assert 0.5 < eight[key] / full[key] < 0.55 and 0.27 < four[key] / full[key] < 0.29  # bits/16 + scales and biases
    assert sizes_of("flux2-klein-base-9b").transformer.total > 2 * sizes.transformer.total


def test_lora_memory_is_linear_in_rank(project_params):
    one = parts(project_params, rank=16).parts["lora_and_optimizer"]
    assert parts(project_params, rank=32).parts["lora_and_optimizer"] == 2 * one
    assert one == 16 * 4 * 4 * sum(  # rank x (in + out) per layer, float32, 4 copies (factor, gradient, 2 moments)
        (5 if path.startswith("transformer") else 20) * (i + o)
        for path, (o, i) in layer_shapes(project_params).items())


def layer_shapes(project_params):
    from charlora.models.geometry import layer_shape

    settings = base_settings(project_params)
    geometry = sizes_of("flux2-klein-base-4b").geometry
    paths = [f"transformer_blocks.0.{t}" for t in settings.double_targets]
    paths += [f"single_transformer_blocks.0.{t}" for t in settings.single_targets]
    return {path: layer_shape(path, geometry) for path in paths}


def test_activations_scale_with_batch_resolution_and_savings(project_params):
    one = parts(project_params).parts["activations"]
    assert parts(project_params, batch_size=2).parts["activations"] == pytest.approx(2 * one, rel=1e-6)
    assert parts(project_params, resolution=512).parts["activations"] < one / 3  # S^2 attention terms shrink fastest
    checkpointed = parts(project_params, gradient_checkpointing=True).parts["activations"]
    assert checkpointed < one / 5
    fused = parts(project_params, backend=Backend("cuda", 2)).parts["activations"]
    assert fused < one / 2  # cuDNN keeps no attention matrices
    assert parts(project_params, backend=Backend("metal", 4)).parts["activations"] == pytest.approx(2 * one, rel=1e-6)
    # The CPU multiplies bfloat16 matrices in float32: float32 activations whatever the precision.
    cpu = Backend("cpu", 2)
    assert parts(project_params, backend=cpu).parts["activations"] == parts(project_params, backend=Backend("cpu", 4)).parts["activations"]


def test_low_ram_keeps_one_batch_of_encoded_data(project_params):
    in_memory = parts(project_params, images=20, low_ram=False).parts["data"]
    on_disk = parts(project_params, images=20, low_ram=True).parts["data"]
    assert in_memory == 20 * on_disk and on_disk > 0
    assert parts(project_params, images=40, low_ram=False).parts["data"] == 2 * in_memory


def test_the_peak_is_the_larger_phase_plus_the_runtime(project_params):
    estimate = parts(project_params)
    assert estimate.total_bytes == max(estimate.warmup_bytes, estimate.steps_bytes) + estimate.runtime_bytes
    p = estimate.parts
    assert estimate.steps_bytes == (p["weights_transformer"] + p["weights_text_encoder"] + p["weights_vae"]
                                    + p["lora_and_optimizer"] + p["data"] + p["activations"])
    assert estimate.warmup_bytes == p["weights_text_encoder"] + p["vae_encoder_weights"] + p["encoding"] + p["data"]
    cpu = parts(project_params, backend=Backend("cpu", 4), resolution=1024)
    assert cpu.parts["encoding"] > 4 * estimate.parts["encoding"]  # the CPU convolution unfolds its input


def test_training_pixels_follow_mflux_resizing():
    assert training_pixels(1024, 768, 1024) == 1024 * 768  # under the area: unchanged
    assert training_pixels(2048, 2048, 1024) == 1024 * 1024
    assert training_pixels(1000, 1000, 512) == 512 * 512
    assert training_pixels(70, 50, 1024) == 64 * 48  # sides cut to multiples of 16


def test_quantizing_a_model_with_narrow_layers_is_refused(project_params):
    settings = replace(resolve_settings(project_params, get_base_model("flux2-klein-tiny")), quantize=8)
    with pytest.raises(PipelineError, match=r"train\.quantize is 8.*flux2-klein-tiny cannot be quantized.*not a multiple "
                                            r"of 64\. Set train\.quantize: 0"):
        check_quantize(settings, sizes_of("flux2-klein-tiny"))
    check_quantize(replace(settings, quantize=None), sizes_of("flux2-klein-tiny"))
    check_quantize(base_settings(project_params, quantize=4), sizes_of("flux2-klein-base-4b"))


def test_stored_dtype_comes_from_the_folders_safetensors(tmp_path):
    from safetensors.numpy import save_file

    (tmp_path / "transformer").mkdir()
    (tmp_path / "vae").mkdir()
    save_file({"a": np.zeros((64, 64), np.float32), "b": np.zeros(4, np.float16)}, str(tmp_path / "transformer" / "0.safetensors"))
    save_file({"a": np.zeros((64, 64), np.float16)}, str(tmp_path / "vae" / "0.safetensors"))
    assert stored_bytes(tmp_path, "transformer") == 4 and stored_bytes(tmp_path, "vae") == 2
    assert stored_bytes(tmp_path, "text_encoder") == 2 and stored_bytes(None, "vae") == 2  # downloads: bfloat16


def test_expected_time_counts_steps_and_encoding(project_params):
    sizes = sizes_of("flux2-klein-base-4b")
    settings = base_settings(project_params, gradient_checkpointing=False)
    plain = estimate_time(sizes, settings, square_workload(10, 1024), METAL)
    checkpointed = estimate_time(sizes, replace(settings, gradient_checkpointing=True), square_workload(10, 1024), METAL)
    overhead = 0.05
    assert (checkpointed.step_seconds - overhead) == pytest.approx((plain.step_seconds - overhead) * 4 / 3)
    assert estimate_time(sizes, settings, square_workload(20, 1024), METAL).encode_seconds == pytest.approx(2 * plain.encode_seconds)
    assert plain.total_seconds(100) == pytest.approx(plain.encode_seconds + 100 * plain.step_seconds)


# -- while training -----------------------------------------------------------------------------------------

def test_the_guard_stops_a_run_that_goes_over_the_budget_and_force_only_warns(project_params, capsys):
    import mlx.core as mx

    from charlora.train.guard import MemoryGuard

    name = "flux2-klein-base-4b"
    plan = plan_memory(for_model(project_params, name), get_base_model(name), mac(64), estimator(name))
    small = replace(plan, budget_bytes=8 << 20)
    guard = MemoryGuard(small, force=False)
    guard.start()
    held = mx.ones((1024, 1024, 4))  # 16 MB of float32
    mx.eval(held)
    with pytest.raises(PipelineError, match=r"a training step used 0\.0 GB of mlx memory, more than the 0\.0 GB.*"
                                            r"memory preset 64gb.*checkpoints so far are kept"):
        guard.check()
    forced = MemoryGuard(small, force=True)
    forced.start()
    mx.eval(mx.ones((1024, 1024, 4)))
    forced.check()
    forced.check()
    assert capsys.readouterr().out.count("train.force is set: going on") == 1
    roomy = MemoryGuard(plan, force=False)
    roomy.start()
    mx.eval(mx.ones((1024, 1024, 4)))
    roomy.check()
    assert roomy.measured()["steps_peak_mlx_mb"] >= 16
    mx.set_memory_limit(mac(64).usable_bytes)  # leave mlx's limit roomy for the tests that follow
    del held


# -- the train stage ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_train_stage_refuses_before_loading_when_the_estimate_exceeds_the_machine(project_params, tiny_flux2, tmp_path):
    from charlora.train.run import train
    from tests.conftest import make_train_dir

    data = make_train_dir(tmp_path / "data")
    params = params_with(project_params, base_model={"path": str(tiny_flux2)}, train={"resolution": 32, "epochs": 1})
    small = mac(0.25)  # 0.19 GB usable: less than the tiny model's full-size VAE and the runtime need
    with pytest.raises(PipelineError, match=r"flux2-klein-tiny with memory preset 16gb would need about 0\.\d GB .*"
                                            r"this machine can give training 0\.2 GB.*train\.force: true"):
        train(params, data, tmp_path / "training", tmp_path / "live", tiny_flux2, machine=small)
    assert not (tmp_path / "training").exists(), "nothing may be written or loaded before the check"


@pytest.mark.slow
def test_force_trains_anyway_and_the_metrics_record_preset_estimate_and_peaks(project_params, tiny_flux2, tmp_path, capsys):
    from charlora.train.run import train
    from tests.conftest import make_train_dir

    data = make_train_dir(tmp_path / "data", count=2)
    params = params_with(project_params, base_model={"path": str(tiny_flux2)},
                         train={"resolution": 32, "epochs": 1, "force": True, "checkpoint_every": 2})
    metrics = train(params, data, tmp_path / "training", tmp_path / "live", tiny_flux2, machine=mac(0.2))
    out = capsys.readouterr().out
    assert "memory preset 16gb (auto: no preset fits" in out and "does not fit, going on because train.force is set" in out
    assert "train.force is set: going on" in out  # the guard saw the measured peak go over the budget
    memory = metrics["memory"]
    assert metrics["preset"] == "16gb" and memory["fits"] is False and memory["machine"]["kind"] == "apple"
    assert metrics["estimated_peak_gb"] == memory["estimate"]["total_gb"] > 0.15
    assert set(memory["estimate"]["parts_gb"]) >= {"weights_transformer", "weights_text_encoder", "weights_vae",
                                                   "lora_and_optimizer", "data", "activations", "encoding", "runtime"}
    measured = memory["measured"]
    assert measured["peak_mlx_mb"] > 0 and measured["peak_rss_mb"] > 0 and measured["warmup_peak_mlx_mb"] > 0
    assert metrics["settings"]["preset"] == "16gb" and metrics["settings"]["gradient_checkpointing"] is False
    assert "memory: measured peak" in out and "estimate/measured" in out
