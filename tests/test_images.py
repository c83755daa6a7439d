"""preprocess: image normalisation, reject reasons, quarantine, and raw files left untouched."""

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from charlora.errors import PipelineError
from charlora.fileio import read_json, sha256_file
from charlora.data.images import dhash, hamming, preprocess, resize, to_rgb
from tests.conftest import noise_image


@pytest.fixture
def prep_params(project_params):
    return replace(project_params.preprocess, size=256, min_side=64, workers=2, max_pixels=4_000_000)


def run_preprocess(tmp_path, raw, params):
    out, rejected = tmp_path / "out", tmp_path / "rejected"
    out.mkdir(exist_ok=True)
    rejected.mkdir(exist_ok=True)
    def hashes():  # the raw files themselves (a symlink's target is not this test's to read either)
        return {p.name: sha256_file(p) for p in raw.iterdir() if p.is_file() and not p.is_symlink()}

    before = hashes()
    report = preprocess(raw, out, rejected, params)
    assert hashes() == before, "raw files must never change"
    return report, out, rejected


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768], [65535, 16384]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # uint16 -> a 16-bit grayscale PNG
    with Image.open(path) as image:
        rgb = to_rgb(image)
    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((1, 0))[0] == 128  # PIL's own convert would clip this to 255
    assert rgb.getpixel((0, 1))[0] == 255


def test_cmyk_and_palette_with_transparency():
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("policy, expected", [("fit", (256, 128)), ("crop", (256, 256)), ("pad", (256, 256))])
def test_resize_policies(policy, expected):
    image = Image.new("RGB", (1000, 500), (10, 20, 30))
    resized = resize(image, 256, policy)
    assert resized.size == expected
    if policy == "pad":
        assert resized.getpixel((0, 0)) == (255, 255, 255)
        assert resized.getpixel((128, 128)) == (10, 20, 30)


def test_near_duplicates_hash_close_and_distinct_images_far(tmp_path):
    a = Image.open(noise_image(tmp_path / "a.png", (400, 300), seed=1))
    resaved = io.BytesIO()
    a.resize((380, 285)).save(resaved, "JPEG", quality=70)
    b = Image.open(noise_image(tmp_path / "b.png", (400, 300), seed=2))
    assert hamming(dhash(a), dhash(Image.open(resaved))) <= 4
    assert hamming(dhash(a), dhash(b)) > 10


def test_accepts_converts_and_names_in_order(tmp_path, prep_params):
    raw = tmp_path / "raw"
    noise_image(raw / "b photo é.jpg", (600, 400), seed=1)
    noise_image(raw / "a.png", (300, 300), seed=2, mode="RGBA")
    noise_image(raw / "c.png", (500, 500), seed=3, mode="CMYK", format="TIFF")
    report, out, _ = run_preprocess(tmp_path, raw, prep_params)
    manifest = read_json(out / "manifest.json")
    assert [m["source"] for m in manifest] == ["a.png", "b photo é.jpg", "c.png"]
    assert [m["name"] for m in manifest] == ["char_001", "char_002", "char_003"]
    assert report["accepted"] == 3 and report["rejected"] == 0
    for entry in manifest:
        with Image.open(out / f"{entry['name']}.png") as image:
            assert image.mode == "RGB" and max(image.size) == 256


def test_exif_rotated_photo_comes_out_upright(tmp_path, prep_params):
    raw = tmp_path / "raw"
    raw.mkdir()
    upright = Image.new("RGB", (300, 600), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 300, 100))  # red band at the top when viewed upright
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer rotates 90 degrees clockwise
    upright.rotate(90, expand=True).save(raw / "phone.jpg", exif=exif.tobytes(), quality=95)
    report, out, _ = run_preprocess(tmp_path, raw, prep_params)
    entry = read_json(out / "manifest.json")[0]
    assert (entry["original_width"], entry["original_height"]) == (300, 600)
    with Image.open(out / "char_001.png") as image:
        assert image.size == (128, 256)
        red, green, _ = image.getpixel((64, 10))
        assert red > 200 and green < 60


def test_rejects_with_reasons_and_quarantine(tmp_path, prep_params):
    raw = tmp_path / "raw"
    good = noise_image(raw / "good.png", (400, 400), seed=1)
    (raw / "empty.jpg").write_bytes(b"")
    (raw / "notes.png").write_text("this is not an image")
    full = noise_image(tmp_path / "full.jpg", (400, 400), seed=2, quality=90).read_bytes()
    (raw / "truncated.jpg").write_bytes(full[: len(full) // 3])
    noise_image(raw / "small.png", (40, 300), seed=3)
    noise_image(raw / "wide.png", (1000, 100), seed=4)
    noise_image(raw / "huge.png", (2100, 2000), seed=5)
    (raw / "good_copy.png").write_bytes(good.read_bytes())
    Image.open(good).resize((390, 390)).save(raw / "good_resaved.jpg", quality=80)
    report, out, rejected = run_preprocess(tmp_path, raw, prep_params)
    reasons = {r["source"]: r["reason"] for r in report["rejects"]}
    assert report["accepted"] == 1
    assert reasons["empty.jpg"].startswith("empty file")
    assert reasons["notes.png"] == "not an image PIL can read"
    assert reasons["truncated.jpg"].startswith("corrupt or truncated")
    assert "too small" in reasons["small.png"] and "preprocess.min_side" in reasons["small.png"]
    assert "extreme aspect ratio" in reasons["wide.png"]
    assert "too large" in reasons["huge.png"] and "preprocess.max_pixels" in reasons["huge.png"]
    assert reasons["good_copy.png"] == "exact duplicate of good.png"
    assert reasons["good_resaved.jpg"].startswith("near duplicate of good.png")
    assert sorted(p.name for p in rejected.iterdir()) == sorted(reasons)
    assert (rejected / "notes.png").read_bytes() == (raw / "notes.png").read_bytes()


def test_decompression_bomb_is_rejected_not_decoded(tmp_path, prep_params):
    raw = tmp_path / "raw"
    noise_image(raw / "ok.png", (300, 300), seed=1)
    # A small file that claims 20000 x 20000 pixels: rejected from its header, never decoded.
    Image.new("1", (20000, 20000)).save(raw / "bomb.png", optimize=True)
    report, _, _ = run_preprocess(tmp_path, raw, prep_params)
    assert report["rejects"][0]["source"] == "bomb.png"
    assert "too large" in report["rejects"][0]["reason"]


def test_user_captions_and_caption_file_problems(tmp_path, prep_params):
    raw = tmp_path / "raw"
    for index, name in enumerate(["a.png", "b.png", "c.png", "d.png"]):
        noise_image(raw / name, (300, 300), seed=index)
    (raw / "a.txt").write_text("a fox on a hill\n")
    (raw / "b.txt").write_text("   \n")
    (raw / "c.txt").write_bytes("caf\xe9 latin-1".encode("latin-1"))
    (raw / "orphan.txt").write_text("no image for me")
    (raw / "metadata.jsonl").write_text(json.dumps({"file_name": "d.png", "text": "from metadata"}) + "\n"
                                        + json.dumps({"file_name": "a.png", "text": "loses to a.txt"}) + "\n")
    report, out, _ = run_preprocess(tmp_path, raw, prep_params)
    captions = {m["source"]: m["user_caption"] for m in read_json(out / "manifest.json")}
    assert captions == {"a.png": "a fox on a hill", "b.png": None, "c.png": None, "d.png": "from metadata"}
    warnings = "\n".join(report["warnings"])
    assert "b.txt: empty caption" in warnings
    assert "c.txt: not UTF-8" in warnings
    assert "orphan.txt: caption file with no image" in warnings


def test_empty_folder_and_nothing_usable_are_errors(tmp_path, prep_params):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(PipelineError, match=r"no images in .*raw"):
        run_preprocess(tmp_path, raw, prep_params)
    (raw / "bad.jpg").write_text("nope")
    with pytest.raises(PipelineError, match="none of the 1 files"):
        run_preprocess(tmp_path, raw, prep_params)


def test_symlinks_leading_outside_the_raw_folder_are_rejected_unread(tmp_path, prep_params):
    """A symlink to a file, or a symlinked folder, outside the raw folder: its own reason, never opened or copied."""
    outside = tmp_path / "outside"
    secret = outside / "secret.txt"
    outside.mkdir()
    secret.write_text("private notes, not a picture")
    noise_image(outside / "album" / "pose.png", (300, 300), seed=8)
    raw = tmp_path / "raw"
    noise_image(raw / "good.png", (300, 300), seed=1)
    noise_image(raw / "inside.png", (300, 300), seed=2)
    (raw / "escape.png").symlink_to(secret)
    (raw / "album").symlink_to(outside / "album", target_is_directory=True)
    (raw / "z_alias.png").symlink_to(raw / "inside.png")  # a link inside the raw folder is an ordinary file
    report, out, rejected = run_preprocess(tmp_path, raw, prep_params)
    reasons = {r["source"]: r for r in report["rejects"]}
    assert reasons["escape.png"]["reason"].startswith(f"symlink to {secret} outside {raw}")
    assert reasons["album"]["reason"].startswith(f"symlink to {outside / 'album'} (a folder) outside {raw}")
    assert not reasons["escape.png"]["quarantined"] and not reasons["album"]["quarantined"]
    assert reasons["z_alias.png"]["reason"] == "exact duplicate of inside.png"
    assert report["accepted"] == 2 and report["raw_files"] == 5
    assert sorted(p.name for p in rejected.iterdir()) == ["z_alias.png"], "nothing from outside is copied"
    assert "private notes" not in json.dumps(report) + (out / "manifest.json").read_text()


def test_a_symlink_target_outside_is_never_opened(tmp_path, prep_params):
    """The target is a FIFO: opening it to read, hash or copy it would block until a writer comes."""
    import os
    import threading

    fifo = tmp_path / "outside.fifo"
    os.mkfifo(fifo)
    raw = tmp_path / "raw"
    noise_image(raw / "good.png", (300, 300), seed=1)
    (raw / "pipe.jpg").symlink_to(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.update(report=run_preprocess(tmp_path, raw, prep_params)[0]))
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # something opened the FIFO: unblock it, then fail
        with open(fifo, "wb") as writer:
            writer.write(b"x")
        worker.join()
        pytest.fail("preprocess opened the target of a symlink leading outside the raw folder")
    assert result["report"]["rejects"][0]["source"] == "pipe.jpg"


def test_a_raw_folder_leading_outside_the_project_is_refused(tmp_path, prep_params):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    noise_image(elsewhere / "a.png", (300, 300), seed=1)
    (project / "data").mkdir(parents=True)
    (project / "data" / "raw").symlink_to(elsewhere, target_is_directory=True)
    out, rejected = tmp_path / "out", tmp_path / "rejected"
    out.mkdir(), rejected.mkdir()
    with pytest.raises(PipelineError, match=r"data/raw leads outside the project folder .*Replace the link"):
        preprocess(project / "data" / "raw", out, rejected, prep_params, project_root=project)
    assert not list(out.iterdir())
