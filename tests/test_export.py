"""LoRA export: key mappings both ways, fused q/k/v exactness, alpha, unknown keys, and diffusers' own loader."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from charlora.errors import PipelineError
from charlora.lora.export import base_geometry, export_adapter, guess_base_model, layer_shape
from charlora.lora.formats import (FORMATS, Lora, LoraLayer, UnknownKeyError, from_tensors, read_lora, to_tensors,
                                   write_lora)
from charlora.lora.verify import check_deltas, check_with_diffusers
from charlora.models.flux2_layers import DOUBLE_TARGETS, SINGLE_TARGETS
from tests.conftest import ROOT, run

# What each format calls the layers of double block 1 and single block 0 (from the formats' own conventions).
DOUBLE_1 = {
    "mflux": ["transformer.transformer_blocks.1." + t for t in DOUBLE_TARGETS],
    "diffusers": ["transformer.transformer_blocks.1." + ("attn.to_out.0" if t == "attn.to_out" else t) for t in DOUBLE_TARGETS],
    "comfyui": ["diffusion_model.double_blocks.1." + n for n in
                ("img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj", "img_mlp.0", "img_mlp.2", "txt_mlp.0", "txt_mlp.2")],
    "kohya": ["lora_unet_double_blocks_1_" + n for n in
              ("img_attn_qkv", "img_attn_proj", "txt_attn_qkv", "txt_attn_proj", "img_mlp_0", "img_mlp_2", "txt_mlp_0", "txt_mlp_2")],
}
SINGLE_0 = {
    "mflux": ["transformer.single_transformer_blocks.0." + t for t in SINGLE_TARGETS],
    "diffusers": ["transformer.single_transformer_blocks.0." + t for t in SINGLE_TARGETS],
    "comfyui": ["diffusion_model.single_blocks.0.linear1", "diffusion_model.single_blocks.0.linear2"],
    "kohya": ["lora_unet_single_blocks_0_linear1", "lora_unet_single_blocks_0_linear2"],
}
SUFFIXES = {"mflux": ("lora_A.weight", "lora_B.weight"), "diffusers": ("lora_A.weight", "lora_B.weight"),
            "comfyui": ("lora_A.weight", "lora_B.weight"), "kohya": ("lora_down.weight", "lora_up.weight", "alpha")}


@pytest.fixture(scope="module")
def tiny_geometry(project_params):
    return base_geometry("flux2-klein-tiny", project_params.tiny_model)


def random_lora(geometry, seed=0, scale=1.0, ranks=(4, 2, 3), double=None, single=None, dtype=torch.float32) -> Lora:
    """Every block layer of ``geometry`` (or the given ones), with different ranks for q, k and v."""
    generator = torch.Generator().manual_seed(seed)
    paths = [f"transformer_blocks.{b}.{t}" for b in range(geometry["num_layers"]) for t in (DOUBLE_TARGETS if double is None else double)]
    paths += [f"single_transformer_blocks.{b}.{t}" for b in range(geometry["num_single_layers"]) for t in (SINGLE_TARGETS if single is None else single)]
    layers = {}
    for index, path in enumerate(paths):
        out, inp = layer_shape(path, geometry)
        rank = ranks[index % len(ranks)]
        layers[path] = LoraLayer(torch.randn(rank, inp, generator=generator).to(dtype) * 0.1,
                                 torch.randn(out, rank, generator=generator).to(dtype) * 0.1, scale)
    return Lora(layers, {"trigger_word": "brmbl"}, "mflux")


def assert_same_deltas(a: Lora, b: Lora, rtol=1e-6):
    assert set(a.layers) == set(b.layers)
    for path in a.layers:
        expected, got = a.layers[path].delta(), b.layers[path].delta()
        assert (got - expected).abs().max() <= rtol * expected.abs().max(), path


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_layer_maps_to_the_formats_keys_and_back(fmt):
    geometry = {"num_layers": 2, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    original = random_lora(geometry, scale=0.5)
    tensors = to_tensors(original, fmt)
    native = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors}
    assert set(DOUBLE_1[fmt]) | set(SINGLE_0[fmt]) <= native
    assert {key.split(".", 1)[1] if fmt == "kohya" else ".".join(key.split(".")[-2:]) for key in tensors} <= set(SUFFIXES[fmt])
    back = from_tensors(tensors, {}, fmt)
    assert back.source_format == fmt
    assert_same_deltas(original, back)


def test_conversions_chain_through_every_format_exactly():
    geometry = {"num_layers": 1, "num_single_layers": 2, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    original = random_lora(geometry, seed=3)
    lora = original
    for fmt in ("comfyui", "kohya", "diffusers", "comfyui", "mflux"):
        lora = from_tensors(to_tensors(lora, fmt), {})  # format detected from the keys
        assert lora.source_format == fmt
    assert_same_deltas(original, lora)


def test_fused_qkv_is_block_diagonal_and_its_product_is_the_stacked_deltas():
    geometry = {"num_layers": 1, "num_single_layers": 0, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    original = random_lora(geometry, ranks=(4, 2, 3), double=["attn.to_q", "attn.to_k", "attn.to_v"])
    tensors = to_tensors(original, "comfyui")
    down = tensors["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"]
    up = tensors["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"]
    q, k, v = (original.layers[f"transformer_blocks.0.attn.{p}"] for p in ("to_q", "to_k", "to_v"))
    assert torch.equal(down, torch.cat([q.down, k.down, v.down]))
    assert down.shape[0] == 4 + 2 + 3 and up.shape == (3 * 16, 9)
    assert torch.count_nonzero(up[:16, 4:]) == 0 and torch.count_nonzero(up[16:32, :4]) == 0
    assert torch.count_nonzero(up[16:32, 6:]) == 0 and torch.count_nonzero(up[32:, :6]) == 0
    fused = up.double() @ down.double()
    assert torch.equal(fused, torch.cat([q.delta(), k.delta(), v.delta()]))  # exact, not just close


def test_a_fused_projection_with_a_missing_part_keeps_it_missing(tiny_geometry, tmp_path):
    original = random_lora(tiny_geometry, double=["attn.to_q", "attn.to_v"], single=[])
    path = tmp_path / "qv.comfyui.safetensors"
    write_lora(original, "comfyui", path)
    back = read_lora(path)
    assert sorted(back.layers) == ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_v"]
    assert_same_deltas(original, back)
    check = check_with_diffusers(path, original, tiny_geometry)
    assert check.ok and check.lora_layers == 3 and not check.unexpected  # diffusers' to_k LoRA is all zeros


def test_alpha_is_written_for_kohya_and_folded_into_B_elsewhere():
    geometry = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    original = random_lora(geometry, scale=0.25, ranks=(4,))
    kohya = to_tensors(original, "kohya")
    assert float(kohya["lora_unet_single_blocks_0_linear2.alpha"]) == 0.25 * 4
    assert float(kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 0.25 * 12  # fused rank 3 x 4
    layer = original.layers["single_transformer_blocks.0.attn.to_out"]
    assert torch.equal(kohya["lora_unet_single_blocks_0_linear2.lora_up.weight"], layer.up)
    diffusers = to_tensors(original, "diffusers")
    assert torch.allclose(diffusers["transformer.single_transformer_blocks.0.attn.to_out.lora_B.weight"], 0.25 * layer.up)
    assert not any(key.endswith(".alpha") for key in diffusers)


def test_alpha_is_read_from_kohya_and_bfl_tensors_and_from_mflux_training_metadata():
    geometry = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    plain = random_lora(geometry, ranks=(4,))
    kohya = to_tensors(plain, "kohya")
    kohya = {k: (v * 2 if k.endswith(".alpha") else v) for k, v in kohya.items()}  # alpha = 2 x rank
    assert all(layer.scale == 2.0 for layer in from_tensors(kohya, {}).layers.values())
    bfl = to_tensors(plain, "comfyui")
    bfl["diffusion_model.single_blocks.0.linear1.alpha"] = torch.tensor(2.0)  # ai-toolkit style, rank 4
    assert from_tensors(bfl, {}).layers["single_transformer_blocks.0.attn.to_qkv_mlp_proj"].scale == 0.5
    mflux = to_tensors(plain, "mflux")
    trained = from_tensors(mflux, {"format": "mflux", "lora_alpha": "8.0"})
    assert all(layer.scale == 2.0 for layer in trained.layers.values())
    # extract also writes the trained alpha as .alpha tensors: applied once, not twice
    stamped = {**mflux, **{k.replace(".lora_A.weight", ".alpha"): torch.tensor(8.0) for k in mflux if k.endswith(".lora_A.weight")}}
    assert all(layer.scale == 2.0 for layer in from_tensors(stamped, {"format": "mflux", "lora_alpha": "8.0"}).layers.values())
    exported = from_tensors(to_tensors(trained, "diffusers"), {})
    assert_same_deltas(trained, exported)


@pytest.mark.parametrize("fmt, key", [
    ("mflux", "transformer.x_embedder.lora_A.weight"),
    ("diffusers", "transformer.transformer_blocks.0.attn.norm_q.lora_A.weight"),
    ("comfyui", "diffusion_model.final_layer.linear.lora_A.weight"),
    ("kohya", "lora_unet_img_in.lora_down.weight"),
    ("comfyui", "diffusion_model.double_blocks.0.img_attn.qkv.dora_scale"),
])
def test_unknown_keys_are_named_and_nothing_is_converted(fmt, key):
    geometry = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    tensors = to_tensors(random_lora(geometry), fmt)
    tensors[key] = torch.zeros(4, 16)
    with pytest.raises(UnknownKeyError, match=key.replace(".", r"\.")):
        from_tensors(tensors, {}, fmt, source="their.safetensors")


def test_an_incomplete_pair_is_an_error_naming_the_layer():
    geometry = {"num_layers": 1, "num_single_layers": 0, "num_attention_heads": 2, "attention_head_dim": 8, "mlp_ratio": 3.0}
    tensors = to_tensors(random_lora(geometry), "diffusers")
    del tensors["transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight"]
    with pytest.raises(PipelineError, match=r"transformer_blocks\.0\.attn\.to_out\.0 has no up matrix"):
        from_tensors(tensors, {}, source="x.safetensors")


@pytest.mark.parametrize("fmt", ["diffusers", "comfyui", "kohya"])
def test_diffusers_loads_each_export_and_applies_exactly_the_original_deltas(fmt, tiny_geometry, tmp_path):
    original = random_lora(tiny_geometry, seed=5, scale=0.5)
    path = tmp_path / f"lora.{fmt}.safetensors"
    tensors = write_lora(original, fmt, path)
    assert check_deltas(original, load_file(str(path)), fmt, str(path)).max_abs_error == 0.0
    check = check_with_diffusers(path, original, tiny_geometry)
    assert check.loaded and check.ok, check.as_dict()
    assert check.lora_layers == len(original.layers) and not check.missing and not check.unexpected
    assert check.max_abs_error <= 1e-6 * max(float(layer.delta().abs().max()) for layer in original.layers.values())
    assert check.output_change > 0 and check.output_error <= 1e-2 * check.output_change
    assert len(tensors) == len(load_file(str(path)))


def test_the_checks_catch_wrong_files(tiny_geometry, tmp_path):
    original = random_lora(tiny_geometry, seed=6)
    # The raw mflux keys: diffusers refuses them (`attn.to_out` is a ModuleList there), as measured in issue 8.
    mflux = tmp_path / "lora.mflux.safetensors"
    write_lora(original, "mflux", mflux)
    refused = check_with_diffusers(mflux, original, tiny_geometry)
    assert not refused.loaded and not refused.ok and "ModuleList" in refused.error
    # A ComfyUI file with q and k swapped inside the fused projection: both checks see it.
    tensors = to_tensors(original, "comfyui")
    up = tensors["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"]
    rows = up.shape[0] // 3
    tensors["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"] = torch.cat([up[rows:2 * rows], up[:rows], up[2 * rows:]])
    swapped = tmp_path / "swapped.comfyui.safetensors"
    save_file(tensors, str(swapped))
    assert not check_deltas(original, tensors, "comfyui", str(swapped)).ok
    wrong = check_with_diffusers(swapped, original, tiny_geometry)
    assert wrong.loaded and not wrong.ok and wrong.max_abs_error > 1e-3


@pytest.mark.slow
def test_real_4b_geometry_is_checked_without_its_weights(project_params, tmp_path):
    geometry = base_geometry("flux2-klein-base-4b", project_params.tiny_model)
    assert (geometry["num_layers"], geometry["num_single_layers"], geometry["num_attention_heads"]) == (5, 20, 24)
    original = random_lora({**geometry, "num_layers": 1, "num_single_layers": 1}, ranks=(1,),
                           double=["attn.to_q", "attn.to_k", "attn.to_v", "ff.linear_in"], single=["attn.to_qkv_mlp_proj"])
    path = tmp_path / "real.kohya.safetensors"
    write_lora(original, "kohya", path)
    check = check_with_diffusers(path, original, geometry)
    assert check.ok and check.output_change is None and "no forward pass" in check.note
    assert guess_base_model(original, project_params.tiny_model, path) == "flux2-klein-base-4b"


def test_export_adapter_refuses_a_lora_for_another_base_model(project_params, tiny_geometry, tmp_path):
    geometry = base_geometry("flux2-klein-base-9b", project_params.tiny_model)
    lora = random_lora({**geometry, "num_layers": 1, "num_single_layers": 0}, ranks=(1,), double=["attn.to_q"])
    source = tmp_path / "nine_b.safetensors"
    write_lora(lora, "mflux", source)
    with pytest.raises(PipelineError, match=r"does not fit the base model's layers.*transformer_blocks\.0\.attn\.to_q is \(4096, 4096\)"):
        export_adapter(source, tmp_path / "out", "x", ["comfyui"], tiny_geometry, print)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_make_export_converts_a_lora_from_elsewhere_and_rejects_a_bad_one(tiny_geometry, project, tmp_path):
    theirs = tmp_path / "their_lora.safetensors"
    original = random_lora(tiny_geometry, seed=9, scale=0.75)
    write_lora(original, "comfyui", theirs)
    out = tmp_path / "exports"
    result = run(["make", "-s", "export", f"LORA={theirs}", f"OUT={out}", f"VENV={ROOT / '.venv'}"], project, timeout=600)
    assert "base model flux2-klein-tiny" in result.stdout
    written = sorted(p.name for p in out.glob("*.safetensors"))
    assert written == ["their_lora.diffusers.safetensors", "their_lora.kohya.safetensors", "their_lora.mflux.safetensors"]
    report = json.loads((out / "their_lora.export.json").read_text())
    assert report["all_verified"] and report["input"]["diffusers"]["loaded_by_diffusers"] is True
    assert report["input"]["mflux"]["loaded_by_diffusers"] is None  # diffusers does not read mflux keys
    assert_same_deltas(original, read_lora(out / "their_lora.mflux.safetensors"))

    tensors = load_file(str(theirs))
    tensors["diffusion_model.img_in.lora_A.weight"] = torch.zeros(2, 2)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    failed = run([sys.executable, "stages/export.py", "--lora", str(bad), "--out-dir", str(tmp_path / "bad_out")], project,
                 check=False)
    assert failed.returncode == 1
    assert "diffusion_model.img_in.lora_A.weight" in failed.stderr and "Nothing was converted" in failed.stderr
    assert not list((tmp_path / "bad_out").glob("*.safetensors"))


@pytest.mark.slow
def test_pipeline_exports_are_verified_and_published(pipeline_run):
    project, out = pipeline_run
    assert "Running stage 'export'" in out
    metrics = json.loads((project / "metrics/export.json").read_text())
    report = json.loads((project / "models/export/report.json").read_text())
    assert metrics["all_verified"] is True and report["all_verified"] is True
    for role in ("best", "final"):
        assert sorted(metrics[role]) == sorted(report[role]) == ["comfyui", "diffusers", "kohya"]
        for fmt, row in report[role].items():
            assert metrics[role][fmt]["max_delta_error"] == row["max_delta_error"] == 0.0
            assert metrics[role][fmt]["loaded_by_diffusers"] is row["loaded_by_diffusers"] is True
            assert row["diffusers"]["output_change"] > 0 and row["source"] == f"models/lora/bramble{'-best' if role == 'best' else ''}.safetensors"
            assert (project / row["file"]).is_file()
    best = read_lora(project / "models/lora/bramble-best.safetensors")
    for fmt in ("diffusers", "comfyui", "kohya"):
        exported = read_lora(project / f"models/export/bramble-best.{fmt}.safetensors")
        assert exported.metadata["lora_format"] == fmt and exported.metadata["trigger_word"] == "brmbl"
        assert_same_deltas(best, exported)
    plan = json.loads((project / "metrics/publish_plan.json").read_text())
    uploads = [f["path_in_repo"] for f in plan["hf"]["files"]]
    assert {"bramble.safetensors", "bramble.diffusers.safetensors", "bramble.comfyui.safetensors"} <= set(uploads)
    assert plan["runware"]["register"]["downloadURL"].endswith("/bramble.comfyui.safetensors")
