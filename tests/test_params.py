"""params.yaml validation: every bad value is named before any work starts."""

import copy

import pytest
import yaml

from charlora.models.registry import get_base_model
from charlora.errors import PipelineError
from charlora.params import load_params, parse_params
from tests.conftest import FIXTURE_PARAMS

RAW = yaml.safe_load(FIXTURE_PARAMS.read_text())


def with_value(dotted, value):
    raw = copy.deepcopy(RAW)
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def test_fixture_params_load():
    params = load_params(FIXTURE_PARAMS)
    assert params.character.trigger == RAW["character"]["trigger"]
    assert params.train.lora.double_blocks.end is None


@pytest.mark.parametrize("dotted, value, expected", [
    ("preprocess.size", "1024", "'preprocess.size' must be of type int"),
    ("preprocess.size", 1000, "'preprocess.size' is 1000; it must be a multiple of 16"),
    ("preprocess.size", 32, "'preprocess.size' is 32; it must be at least 64"),
    ("preprocess.resize", "stretch", "'preprocess.resize' is 'stretch'; allowed values: fit, crop, pad"),
    ("train.lora.rank", 0, "'train.lora.rank' is 0; it must be at least 1"),
    ("train.lora.rank", True, "'train.lora.rank' must be of type int"),
    ("train.learning_rate", "fast", "'train.learning_rate' must be of type float"),
    ("train.resolution", 100, "'train.resolution' is 100; it must be a multiple of 16"),
    ("merge.heldout_fraction", 0.9, "'merge.heldout_fraction' is 0.9; it must be at most 0.5"),
    ("character.name", "My Char", "'character.name' is 'My Char'"),
    ("merge.preview_prompts", [], "'merge.preview_prompts' needs at least 1 item"),
    ("train.lora.double_blocks.start", -1, "'train.lora.double_blocks.start' is -1"),
    ("train.lora.double_targets", ["attn.to_q", "attn.qkv"], "'train.lora.double_targets[1]' is 'attn.qkv'; allowed values: attn.to_q, attn.to_k"),
    ("train.lora.single_targets", ["attn.to_q"], "'train.lora.single_targets[0]' is 'attn.to_q'; allowed values: attn.to_qkv_mlp_proj, attn.to_out"),
    ("export.formats", ["diffusers", "onnx"], "'export.formats[1]' is 'onnx'; allowed values: mflux, diffusers, comfyui, kohya"),
    ("export.formats", [], "'export.formats' needs at least 1 item"),
    ("publish.runware.lora_format", "bfl", "'publish.runware.lora_format' is 'bfl'; allowed values: mflux, diffusers"),
])
def test_bad_values_name_the_key(dotted, value, expected):
    with pytest.raises(PipelineError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.").replace("[", r"\[")):
        parse_params(with_value(dotted, value))


def test_unknown_key_is_named():
    raw = with_value("train.lora.rnak", 4)
    with pytest.raises(PipelineError, match=r"unknown key 'train\.lora\.rnak'"):
        parse_params(raw)


def test_missing_key_is_named():
    raw = copy.deepcopy(RAW)
    del raw["caption"]["model"]
    with pytest.raises(PipelineError, match=r"missing key 'caption\.model'"):
        parse_params(raw)


def test_null_allowed_only_where_optional():
    assert parse_params(with_value("train.epochs", None)).train.epochs is None
    assert parse_params(with_value("train.batch_size", None)).train.batch_size is None  # the memory preset's
    assert parse_params(with_value("train.learning_rate", None)).train.learning_rate is None  # the model's
    with pytest.raises(PipelineError, match=r"'train\.seed' must not be empty"):
        parse_params(with_value("train.seed", None))


def test_invalid_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="params.yaml is not valid YAML"):
        load_params(bad)


def test_distilled_model_refused_with_the_base_model_to_use():
    with pytest.raises(PipelineError, match="step-distilled.*flux2-klein-base-4b"):
        get_base_model("flux2-klein-4b")
    with pytest.raises(PipelineError, match="not known"):
        get_base_model("sdxl")
    assert get_base_model("flux2-klein-base-4b").num_single_blocks == 20


def test_unknown_base_model_is_named_with_the_choices():
    with pytest.raises(PipelineError, match=r"base_model\.name 'sdxl' is not known\. Use one of: flux2-klein-base-4b, "):
        parse_params(with_value("base_model.name", "sdxl"))
    with pytest.raises(PipelineError, match="step-distilled"):
        parse_params(with_value("base_model.name", "flux2-klein-4b"))


@pytest.mark.parametrize("bits", [0, 3, 4, 5, 6, 8])
def test_quantize_takes_the_bits_mflux_supports(bits):
    assert parse_params(with_value("train.quantize", bits)).train.quantize == bits


def test_quantize_refuses_other_bits():
    with pytest.raises(PipelineError, match=r"'train\.quantize' is 7; allowed values: 0, 3, 4, 5, 6, 8"):
        parse_params(with_value("train.quantize", 7))


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(PipelineError, match=r"'train\.preset' is '20gb'; allowed values: auto, 16gb, 24gb, 32gb, 48gb, "
                                            r"64gb, none"):
        parse_params(with_value("train.preset", "20gb"))
    assert parse_params(with_value("train.preset", "24gb")).train.preset == "24gb"


def test_memory_keys_written_before_presets_take_their_defaults():
    raw = copy.deepcopy(RAW)
    for key in ("preset", "force", "gradient_checkpointing", "cache_limit_gb"):
        del raw["train"][key]
    train = parse_params(raw).train
    assert (train.preset, train.force, train.gradient_checkpointing, train.cache_limit_gb) == ("auto", False, None, None)


def test_top_level_sections_are_checked_too():
    with pytest.raises(PipelineError, match=r"unknown key 'plots'"):
        parse_params({**RAW, "plots": []})


def write_project_params(project, **updates):
    project.mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(RAW)
    for dotted, value in updates.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return project / "params.yaml"


@pytest.mark.parametrize("key, value", [
    ("base_model.path", "/opt/models/flux2"),
    ("base_model.path", "../flux2"),
    ("evaluate.prompts_file", "../prompts.json"),
    ("caption.model", "OUTSIDE"),  # an existing folder outside the project (see below)
    ("evaluate.clip_model", "LINK"),  # a symlink inside the project to a folder outside
])
def test_local_paths_in_params_must_stay_inside_the_project(tmp_path, key, value):
    outside = tmp_path / "outside-model"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "models").mkdir()
    (project / "models" / "link").symlink_to(outside, target_is_directory=True)
    value = {"OUTSIDE": str(outside), "LINK": "models/link"}.get(value, value)
    path = write_project_params(project, **{key: value})
    with pytest.raises(PipelineError, match=rf"'{key}' is '{value}', which leads outside the project folder"):
        load_params(path)


def test_local_paths_inside_the_project_and_hub_ids_are_fine(tmp_path):
    project = tmp_path / "project"
    (project / "models" / "florence").mkdir(parents=True)
    path = write_project_params(project, **{"caption.model": "models/florence", "base_model.path": "models/base/x",
                                            "evaluate.clip_model": "openai/clip-vit-base-patch32"})
    params = load_params(path)
    assert params.caption.model == "models/florence" and params.evaluate.clip_model == "openai/clip-vit-base-patch32"


def test_a_float_written_in_exponent_notation_is_a_float():
    """PyYAML reads `learning_rate: 5e-4` (no decimal point) as the string '5e-4'; it is still the number."""
    raw = yaml.safe_load("learning_rate: 5e-4")["learning_rate"]
    assert raw == "5e-4"
    assert parse_params(with_value("train.learning_rate", raw)).train.learning_rate == pytest.approx(5e-4)
