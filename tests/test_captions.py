"""caption: normalisation, user captions first, Florence-2 on a tiny local model, cache reuse."""

from dataclasses import replace

import pytest

from charlora.data.captions import Florence2Captioner, caption_images, normalize_caption
from charlora.errors import PipelineError
from charlora.fileio import write_json
from tests.conftest import noise_image


@pytest.mark.parametrize("raw, expected", [
    ("The image shows a small fox in a field.", "brmbl, a small fox in a field."),
    ("  In this image,   a fox\n sits.  ", "brmbl, a fox sits."),
    ("This picture depicts A fox.", "brmbl, a fox."),
    ("brmbl, a fox waving", "brmbl, a fox waving"),
    ("<s>A fox</s><pad>", "brmbl, a fox"),
    ("", "brmbl"),
    ("BBC logo on a wall", "brmbl, BBC logo on a wall"),
])
def test_normalize_caption(raw, expected):
    assert normalize_caption(raw, "brmbl", 300) == expected


def test_normalize_cuts_at_sentence_or_word_boundary():
    text = "A fox sits on a hill. It wears a teal scarf and looks at the camera with a smile."
    assert normalize_caption(text, "t", 40) == "t, a fox sits on a hill."
    assert normalize_caption("one two three four five six seven eight", "t", 20) == "t, one two three four"


@pytest.fixture
def processed(tmp_path):
    folder = tmp_path / "processed"
    manifest = []
    for index in range(3):
        noise_image(folder / f"char_{index + 1:03d}.png", (64, 64), seed=index)
        manifest.append({"name": f"char_{index + 1:03d}", "source": f"img{index}.png",
                         "user_caption": "a fox on a hill" if index == 0 else None})
    write_json(folder / "manifest.json", manifest)
    return folder


@pytest.fixture
def florence_params(project_params, tiny_florence2):
    return replace(project_params.caption, model=str(tiny_florence2), max_new_tokens=12, num_beams=1, device="cpu")


class CountingFactory:
    """Builds the real Florence-2 captioner and counts how many images it captions."""

    def __init__(self):
        self.captioned = []

    def __call__(self, params):
        captioner = Florence2Captioner(params)
        original = captioner.caption

        def caption(path):
            self.captioned.append(path.name)
            return original(path)

        captioner.caption = caption
        return captioner


@pytest.mark.slow
def test_florence2_captions_and_cache_reuse(tmp_path, processed, florence_params):
    cache = tmp_path / "cache"
    first = CountingFactory()
    out = tmp_path / "out1"
    out.mkdir()
    records = caption_images(processed, out, cache, florence_params, "brmbl", captioner_factory=first)
    assert [r.source for r in records] == ["user", "florence2", "florence2"]
    assert first.captioned == ["char_002.png", "char_003.png"]
    assert (out / "char_001.txt").read_text() == "brmbl, a fox on a hill\n"
    for name in ("char_002", "char_003"):
        text = (out / f"{name}.txt").read_text().strip()
        assert text.startswith("brmbl, ") and len(text) > len("brmbl, ")
    assert len(list(cache.glob("*.json"))) == 2

    # One more image: only it is captioned, the others come from the cache.
    noise_image(processed / "char_004.png", (64, 64), seed=9)
    write_json(processed / "manifest.json", [*__import__("json").loads((processed / "manifest.json").read_text()),
                                              {"name": "char_004", "source": "new.png", "user_caption": None}])
    second = CountingFactory()
    out2 = tmp_path / "out2"
    out2.mkdir()
    records = caption_images(processed, out2, cache, florence_params, "brmbl", captioner_factory=second)
    assert second.captioned == ["char_004.png"]
    assert [r.source for r in records] == ["user", "cache", "cache", "florence2"]
    assert (out2 / "char_002.txt").read_text() == (out / "char_002.txt").read_text()

    # A different captioner setting is a different cache key: captioned again.
    third = CountingFactory()
    out3 = tmp_path / "out3"
    out3.mkdir()
    caption_images(processed, out3, cache, replace(florence_params, max_new_tokens=8), "brmbl", captioner_factory=third)
    assert len(third.captioned) == 3


def test_missing_model_gives_a_clear_error(tmp_path, project_params):
    with pytest.raises(PipelineError, match="could not load the captioner model"):
        Florence2Captioner(replace(project_params.caption, model=str(tmp_path / "no-such-model"), device="cpu"))


def test_captioner_none_requires_user_captions(tmp_path, processed, project_params):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PipelineError, match=r"img1.png has no caption .*data/raw/img1.txt"):
        caption_images(processed, out, tmp_path / "cache", replace(project_params.caption, captioner="none"), "brmbl")
