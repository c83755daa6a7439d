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
    train, heldout = tmp_path / "train", tmp_path / "heldout"
    train.mkdir()
    heldout.mkdir()
    params = replace(project_params.merge, heldout_fraction=0.2, preview_prompts=["{trigger} waving", "{trigger} asleep"])
    summary = merge(processed, captions, train, heldout, params, "brmbl")
    assert summary["train_images"] == 4 and summary["heldout_images"] == 1
    held = summary["heldout"][0]
    assert sorted(p.name for p in heldout.iterdir()) == [f"{held}.png", f"{held}.txt"]
    pngs = sorted(p.stem for p in train.glob("*.png"))
    assert len(pngs) == 4 and held not in pngs
    assert all((train / f"{stem}.txt").read_text().startswith("brmbl, ") for stem in pngs)
    assert (train / "preview_1.txt").read_text() == "brmbl waving\n"
    assert (train / "preview_2.txt").read_text() == "brmbl asleep\n"
