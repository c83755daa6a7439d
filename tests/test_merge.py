"""merge: the mflux folder layout and the held-out split."""

from dataclasses import replace

from charlora.data.merge import heldout_names, merge
from charlora.fileio import write_json
from tests.conftest import noise_image


def test_heldout_split_is_deterministic_and_bounded():
    names = [f"char_{i:03d}" for i in range(1, 15)]
    picked = heldout_names(names, 0.1, seed=42)
    assert picked == heldout_names(list(reversed(names)), 0.1, seed=42)
    assert len(picked) == 1
    assert heldout_names(names, 0.01, seed=42) != []  # at least one image when the fraction is > 0
    assert heldout_names(names, 0.0, seed=42) == []
    assert heldout_names(["char_001"], 0.5, seed=42) == []  # the only image stays in training
    assert len(heldout_names(names, 0.5, seed=1)) == 7


def test_merge_layout(tmp_path, project_params):
    processed, captions = tmp_path / "processed", tmp_path / "captioned"
    captions.mkdir()
    manifest = []
    for index in range(1, 6):
        name = f"char_{index:03d}"
        noise_image(processed / f"{name}.png", (64, 64), seed=index)
        (captions / f"{name}.txt").write_text(f"brmbl, picture {index}\n")
        manifest.append({"name": name})
    write_json(processed / "manifest.json", manifest)
    train, heldout, prior = tmp_path / "train", tmp_path / "heldout", tmp_path / "prior"
    for folder in (train, heldout, prior):
        folder.mkdir()
    for index in range(1, 6):  # two prior pictures per picture, as the prior stage writes them
        for copy in (1, 2):
            noise_image(prior / f"char_{index:03d}_prior{copy}.png", (64, 64), seed=100 + 10 * index + copy)
            (prior / f"char_{index:03d}_prior{copy}.txt").write_text(f"picture {index}\n")
    params = replace(project_params.merge, heldout_fraction=0.2, preview_prompts=["{trigger} waving", "{trigger} asleep"])
    summary = merge(processed, captions, prior, train, heldout, params, "brmbl")
    assert summary["train_images"] == 4 and summary["heldout_images"] == 1 and summary["prior_images"] == 8
    held = summary["heldout"][0]
    assert sorted(p.name for p in heldout.iterdir()) == [f"{held}.png", f"{held}.txt"]
    own = sorted(p.stem for p in train.glob("*.png") if "_prior" not in p.stem)
    assert len(own) == 4 and held not in own
    assert all((train / f"{stem}.txt").read_text().startswith("brmbl, ") for stem in own)
    # The held-out picture's priors stay out of training; every training picture brings its two, captions beside.
    priors = sorted(p.stem for p in train.glob("*_prior*.png"))
    assert priors == sorted(f"{stem}_prior{copy}" for stem in own for copy in (1, 2))
    assert all((train / f"{stem}.txt").read_text() == f"picture {int(stem[5:8])}\n" for stem in priors)
    assert (train / "preview_1.txt").read_text() == "brmbl waving\n"
    assert (train / "preview_2.txt").read_text() == "brmbl asleep\n"
