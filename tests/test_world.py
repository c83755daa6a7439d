"""The cartoon world (charlora.world): determinism, the exclusion rule that keeps bramble out of it,
caption grammar and vocabulary, sizes, and the sample character drawn from it."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charlora.world import (ACCESSORIES, ACCESSORY_COLOURS, BODIES, BRAMBLE, COLOURS, MARKS, POSES, POSITIONS, SCENES,
                            SIZES, SPECIES, Creature, Spec, bramble_traits, caption, creature_caption, iter_specs,
                            lookalike, parse_scene_caption, render, sample_specs, scene_caption, vocabulary, words)
from charlora.world.palette import ACCESSORY_RGB, BODY_RGB

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_sample_character as sample  # noqa: E402

TRAITS = ("round", "orange", "fox", "teal scarf", "white star")
WORLD = sample_specs(20_000, seed=0)


def traits_of(creature: Creature) -> set[str]:
    have = {"round": creature.body == "round", "orange": creature.colour == "orange", "fox": creature.species == "fox",
            "teal scarf": creature.accessory == "scarf" and creature.accessory_colour == "teal",
            "white star": creature.mark == "star"}
    return {name for name, present in have.items() if present}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def near(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    """How many pixels are within ``tolerance`` of ``rgb`` in every channel."""
    return int((np.abs(pixels(image) - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def digest(specs: list[Spec], size=(128, 128)) -> str:
    h = hashlib.sha256()
    for spec in specs:
        h.update(render(spec, size).tobytes())
    return h.hexdigest()


# Determinism

def test_same_seed_gives_identical_specs_and_pixels():
    assert sample_specs(12, seed=5) == sample_specs(12, seed=5)
    assert sample_specs(5, seed=5) == sample_specs(12, seed=5)[:5] == list(itertools.islice(iter_specs(5), 5))
    specs = sample_specs(12, seed=5)
    assert digest(specs) == digest(sample_specs(12, seed=5))


def test_same_seed_gives_identical_bytes_in_another_process():
    """No dependence on Python's per-process hash randomisation, global random state or the clock."""
    code = ("import hashlib; from charlora.world import render, sample_specs; h = hashlib.sha256()\n"
            "for s in sample_specs(6, seed=9): h.update(render(s, (96, 80)).tobytes())\nprint(h.hexdigest())")
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": str(k), "PYTHONPATH": str(ROOT)}).stdout.strip() for k in (1, 2)}
    assert outputs == {digest(sample_specs(6, seed=9), (96, 80))}


def test_different_seeds_differ():
    a, b = sample_specs(8, seed=1), sample_specs(8, seed=2)
    assert a != b
    assert digest(a) != digest(b)
    forest = replace(a[0], scene="forest")
    assert render(replace(forest, seed=forest.seed + 1)).tobytes() != render(forest).tobytes()  # the seed moves the trees


# The exclusion rule

def test_bramble_traits_counts_each_trait_once():
    assert bramble_traits(BRAMBLE) == 5
    assert bramble_traits(Spec(BRAMBLE, "beach", "sitting", "small", "left")) == 5
    assert bramble_traits(replace(BRAMBLE, accessory_colour="red")) == 4           # a red scarf is not the trait
    assert bramble_traits(replace(BRAMBLE, accessory="hat")) == 4                  # nor is a teal hat
    assert bramble_traits(Creature("tall", "cat", "blue", "none", None, "spots")) == 0


def test_world_never_shows_three_bramble_traits_but_shows_each_trait_and_pair():
    counts = Counter(bramble_traits(spec) for spec in WORLD)
    assert max(counts) == 2, counts
    singles, pairs = Counter(), Counter()
    for spec in WORLD:
        have = traits_of(spec.creature)
        singles.update(have)
        pairs.update(itertools.combinations(sorted(have), 2))
    assert all(singles[t] >= 200 for t in TRAITS), singles
    assert all(pairs[p] >= 10 for p in itertools.combinations(sorted(TRAITS), 2)), pairs


def test_world_uses_every_attribute_value():
    for values, get in ((BODIES, lambda s: s.creature.body), (SPECIES, lambda s: s.creature.species),
                        (COLOURS, lambda s: s.creature.colour), (ACCESSORIES, lambda s: s.creature.accessory),
                        (ACCESSORY_COLOURS, lambda s: s.creature.accessory_colour), (MARKS, lambda s: s.creature.mark),
                        (SCENES, lambda s: s.scene), (POSES, lambda s: s.pose), (SIZES, lambda s: s.size),
                        (POSITIONS, lambda s: s.position)):
        seen = Counter(get(spec) for spec in WORLD)
        assert set(values) <= set(seen), set(values) - set(seen)
    assert all(s.creature.accessory_colour != s.creature.colour for s in WORLD)  # an accessory never vanishes


# Captions

def test_captions_use_only_vocabulary_words_and_the_whole_vocabulary():
    vocab = set(vocabulary())
    used = set()
    for spec in WORLD[:5000]:
        for variant in (None, 0, 15):
            text = caption(spec, variant)
            assert text == text.lower() and len(words(text)) <= 25, text
            assert set(words(text)) <= vocab, set(words(text)) - vocab
            used |= set(words(text))
    assert used == vocab, vocab - used
    assert vocabulary() == sorted(vocab)


def test_caption_is_the_creature_then_what_varies():
    spec = Spec(BRAMBLE, "beach", "sitting", "small", "left", seed=0)
    assert caption(spec, 0) == "a round orange fox with a teal scarf and a white star, sitting on a sunny beach, small, on the left"
    assert caption(spec, 1) == "a round orange fox with a white star and a teal scarf, sitting on a sunny beach, small, on the left"
    assert scene_caption(spec, 2) == "sitting on a sunny beach, on the left, small"
    middle = replace(spec, size="medium", position="centre")
    assert scene_caption(middle, 0) == "sitting on a sunny beach, medium, in the centre"
    assert scene_caption(middle, 4 | 8) == "sitting on a sunny beach"
    assert creature_caption(Creature("tall", "owl", "grey", "glasses", "black", "none")) == "a tall grey owl with black glasses"
    assert caption(spec) == caption(spec)  # the default variant comes from the spec, not from chance
    look = {"round", "orange", "fox", "teal", "scarf", "star"}
    for shot in sample.SHOTS:
        assert not look & set(words(shot.caption)), shot.caption  # bramble's captions leave its look to the trigger


def test_a_scene_caption_parses_back_to_what_it_names():
    """parse_scene_caption inverts scene_caption for every variant, and names the part it cannot read."""
    for spec in sample_specs(200, 5):
        for variant in range(16):
            parsed = parse_scene_caption(scene_caption(spec, variant))
            assert parsed == {"scene": spec.scene, "pose": spec.pose, "size": spec.size, "position": spec.position}
    for bad, part in (("sitting on the moon", "sitting on the moon"), ("sitting in the snow, huge", "huge"),
                      ("dancing in the snow", "dancing in the snow")):
        with pytest.raises(ValueError, match=f"'{part}'"):
            parse_scene_caption(bad)


# Rendering

@pytest.mark.parametrize("size", [(128, 128), (128, 96), (96, 128), (80, 144), (144, 80), (201, 37), (33, 65)])
def test_rendered_size_is_the_requested_size_and_the_creature_fits(size):
    for spec in sample_specs(6, seed=sum(size)) + [Spec(BRAMBLE, "city", "jumping", "large", "left"),
                                                   Spec(replace(BRAMBLE, body="long"), "room", "waving", "large", "right")]:
        image = render(spec, size)
        assert image.size == size and image.mode == "RGB"
        cutout = render(spec, size, transparent=True)
        assert cutout.size == size and cutout.mode == "RGBA"
        alpha = np.asarray(cutout.getchannel("A"))
        assert alpha.max() == 255
        border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        assert border.max() < 32, f"creature cut by the frame at {size}: {spec}"


def hsv_count(image: Image.Image, hues: tuple[int, int], min_saturation: int, min_value: int) -> int:
    """Pixels whose hue (0-255 for 0-360 degrees) lies in ``hues``, at least this saturated and bright."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.int16)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return int(((h >= hues[0]) & (h <= hues[1]) & (s >= min_saturation) & (v >= min_value)).sum())


def orange(image: Image.Image) -> int:
    return hsv_count(image, (12, 26), 150, 200)  # 17-37 degrees and bright: orange, not brown, red or yellow


def teal(image: Image.Image) -> int:
    return hsv_count(image, (118, 134), 180, 120)  # 167-189 degrees: teal, not green or blue


def test_bramble_shows_orange_body_teal_scarf_and_white_star():
    spec = Spec(BRAMBLE, "studio_blue", "standing", "medium", "centre")
    image = render(spec)
    assert orange(image) > 500 and near(image, BODY_RGB["orange"]) > 500  # measured 907 and 794
    assert teal(image) > 70 and near(image, ACCESSORY_RGB["teal"]) > 70  # measured 131 and 122
    for colour, scarf in (("brown", "green"), ("yellow", "blue"), ("red", "green")):
        other = render(replace(spec, creature=replace(BRAMBLE, colour=colour, accessory_colour=scarf)))
        assert orange(other) < 20 and teal(other) < 5, (colour, scarf)
    starless = render(replace(spec, creature=replace(BRAMBLE, mark="none")))
    changed = np.abs(pixels(image) - pixels(starless)).max(axis=-1) > 40
    assert 20 < changed.sum() < 300  # the star is a small patch ...
    assert (pixels(image)[changed].min(axis=-1) > 200).mean() > 0.5  # ... mostly white


def test_every_attribute_value_changes_the_picture():
    base = Spec(Creature("square", "bear", "green", "hat", "red", "spots"), "studio_white", "standing", "medium", "centre")
    seen = {render(base).tobytes()}
    options = {"body": BODIES, "species": SPECIES, "colour": COLOURS, "mark": MARKS}
    variants = [replace(base, creature=replace(base.creature, **{k: v})) for k, values in options.items() for v in values]
    variants += [replace(base, creature=replace(base.creature, accessory=a, accessory_colour=None if a == "none" else "red"))
                 for a in ACCESSORIES]
    variants += [replace(base, creature=replace(base.creature, accessory_colour=c)) for c in ACCESSORY_COLOURS]
    variants += [replace(base, **{k: v}) for k, values in (("scene", SCENES), ("pose", POSES), ("size", SIZES),
                                                           ("position", POSITIONS)) for v in values]
    for spec in variants:
        seen.add(render(spec).tobytes())
    distinct = 1 + sum(len(v) - 1 for v in (BODIES, SPECIES, COLOURS, MARKS, ACCESSORIES, ACCESSORY_COLOURS, SCENES, POSES,
                                            SIZES, POSITIONS))
    assert len(seen) == distinct


def test_scenes_differ_in_colour_layout():
    creature = Creature("tall", "cat", "grey", "none", None, "none")
    means = {scene: pixels(render(Spec(creature, scene, "standing", "small", "left"), (64, 64))).reshape(4, 16, 4, 16, 3)
             .mean(axis=(1, 3)) for scene in SCENES}  # a 4x4 grid of mean colours
    for a, b in itertools.combinations(SCENES, 2):
        assert np.abs(means[a] - means[b]).mean() > 8, (a, b)


# The shipped sample character

def test_sample_character_tool_writes_the_40_shots_the_same_every_time(tmp_path):
    """The tool behind data/raw (and behind every test project's pictures): files, formats, captions, repeatable."""
    first, second = tmp_path / "first", tmp_path / "second"
    sample.write_sample(first)
    sample.write_sample(second)
    metadata = {row["file_name"]: row["text"] for row in map(json.loads, (first / "metadata.jsonl").read_text().splitlines())}
    assert len(sample.SHOTS) == 40
    assert sorted(p.name for p in first.iterdir() if p.suffix in (".png", ".jpg")) == sorted(s.file for s in sample.SHOTS)
    for shot in sample.SHOTS:
        assert (first / shot.file).read_bytes() == (second / shot.file).read_bytes(), shot.file
        with Image.open(first / shot.file) as image:
            stored = image.size[::-1] if shot.file == sample.EXIF_ROTATED else image.size
            assert stored == shot.size, shot.file
            assert image.mode == ("RGBA" if shot.file == sample.CUTOUT else "RGB")
            if shot.file == sample.EXIF_ROTATED:
                assert image.getexif()[0x0112] == 6
            if shot.file.endswith(".png"):  # lossless: the written pixels are exactly what the renderer draws
                assert image.tobytes() == sample.render_shot(shot).tobytes(), shot.file
        beside = first / Path(shot.file).with_suffix(".txt").name
        if shot.caption_beside:
            assert beside.read_text().strip() == shot.caption and shot.file not in metadata
        else:
            assert not beside.exists() and metadata[shot.file] == shot.caption
    assert {s.scene for s in sample.SHOTS} >= {"beach", "forest", "night", "snow", "city", "room", "meadow"}
    with Image.open(first / sample.CUTOUT) as cutout:
        assert cutout.getpixel((0, 0))[3] == 0


def test_tiny_wave_is_a_small_figure_in_a_corner():
    shot = next(s for s in sample.SHOTS if s.file == "bramble_tiny_wave.png")
    image = sample.render_shot(shot)
    body = np.argwhere(np.abs(pixels(image) - np.array(BODY_RGB["orange"])).max(axis=-1) <= 30)
    (top, left), (bottom, right) = body.min(axis=0), body.max(axis=0)
    assert right < image.width * 0.5 and top > image.height * 0.5  # lower-left quarter


def test_a_lookalike_differs_in_one_trait_and_keeps_the_world_rules():
    rng = random.Random(5)
    changed = set()
    for spec in sample_specs(300, seed=8):
        other = lookalike(spec.creature, rng)
        differing = {name for name in ("body", "species", "colour", "accessory", "mark")
                     if getattr(other, name) != getattr(spec.creature, name)}
        if not differing:  # the same accessory in another colour
            assert other.accessory_colour != spec.creature.accessory_colour
            differing = {"accessory"}
        assert len(differing) == 1, (spec.creature, other)
        assert bramble_traits(other) <= 2 and other.colour != other.accessory_colour
        changed |= differing
    assert changed == {"body", "species", "colour", "accessory", "mark"}
