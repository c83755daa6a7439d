"""preprocess: validate, clean and resize the raw images of one character.

Raw files are only ever read. Accepted images become ``char_NNN.png`` (RGB, long side = ``size``
for the ``fit`` policy) in a deterministic order (sorted raw file names); rejected files are
copied to a quarantine folder and listed with a reason in the report. A symlink (to a file or a
folder) that leads outside the raw folder is rejected with its own reason and never opened,
hashed or copied; a raw folder that itself leads outside the project is refused.
"""

from __future__ import annotations

import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from charlora.data.raw_files import list_raw_files, outside_reason, read_user_captions
from charlora.errors import PipelineError
from charlora.fileio import sha256_file, write_json
from charlora.params import PreprocessParams
from charlora.progress import Progress

@dataclass(frozen=True)
class Accepted:
    """One raw image that passed, with where its cleaned copy goes."""

    source: str
    source_sha256: str
    name: str
    width: int
    height: int
    original_width: int
    original_height: int
    dhash: int
    user_caption: str | None = None


@dataclass(frozen=True)
class Rejected:
    """One raw file that was not used, and why."""

    source: str
    reason: str
    quarantined: bool = True  # a copy is in the rejected folder (never for a symlink leading outside)


@dataclass(frozen=True)
class _Decoded:
    source: str
    source_sha256: str
    image: Image.Image | None
    original_size: tuple[int, int]
    reason: str | None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled (not clipped), CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's convert("RGB") clips 16-bit values at 255, which turns most pixels white.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize(image: Image.Image, size: int, policy: str) -> Image.Image:
    """Resize with LANCZOS: ``fit`` long side to ``size``; ``crop`` a centred square; ``pad`` to a white square."""
    width, height = image.size
    if policy == "crop":
        return ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)
    scale = size / max(width, height)
    fitted = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    if policy == "fit":
        return fitted
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


def dhash(image: Image.Image, hash_size: int = 8) -> int:
    """64-bit difference hash: robust to resizing and recompression, so near-duplicates land close."""
    small = np.asarray(image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


def _decode(path: Path, params: PreprocessParams) -> _Decoded:
    """Open, validate and clean one raw file. Runs in a worker process."""
    source = path.name
    digest = sha256_file(path)
    if path.stat().st_size == 0:
        return _Decoded(source, digest, None, (0, 0), "empty file (0 bytes)")
    # Our own limit is checked below from the header; PIL's guard stays as a backstop.
    Image.MAX_IMAGE_PIXELS = params.max_pixels * 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            # The upright size: EXIF orientations 5-8 swap the sides.
            original = (height, width) if image.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (width, height)
            if width * height > params.max_pixels:
                return _Decoded(source, digest, None, (width, height),
                                f"too large: {width}x{height} = {width * height} pixels is over preprocess.max_pixels "
                                f"({params.max_pixels}); downscale it or raise the param")
            if image.format == "JPEG":
                # DCT-domain downscaling while decoding: big JPEGs decode several times faster.
                image.draft("RGB", (params.size, params.size))
            image.load()
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        reason = "not an image PIL can read" if isinstance(error, UnidentifiedImageError) else f"too large ({error})"
        return _Decoded(source, digest, None, (0, 0), reason)
    except (OSError, SyntaxError, ValueError) as error:
        return _Decoded(source, digest, None, (0, 0), f"corrupt or truncated image ({error})")
    short, long = min(original), max(original)
    if short < params.min_side:
        return _Decoded(source, digest, None, original,
                        f"too small: shortest side {short} px is under preprocess.min_side ({params.min_side} px)")
    if long / short > params.max_aspect_ratio:
        return _Decoded(source, digest, None, original,
                        f"extreme aspect ratio {long / short:.1f}:1 is over preprocess.max_aspect_ratio "
                        f"({params.max_aspect_ratio}); crop it closer to the character")
    return _Decoded(source, digest, resize(to_rgb(image), params.size, params.resize), original, None)


def _decode_and_hash(path: Path, params: PreprocessParams) -> tuple[_Decoded, int | None, bytes | None]:
    decoded = _decode(path, params)
    if decoded.image is None:
        return decoded, None, None
    # Hand the pixels back as PNG-ready bytes so the parent only writes files.
    image = decoded.image
    return _Decoded(decoded.source, decoded.source_sha256, None, decoded.original_size, None), dhash(image), _png_bytes(image)


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def preprocess(raw_dir: Path, out_dir: Path, rejected_dir: Path, params: PreprocessParams,
               project_root: Path | None = None) -> dict:
    """Clean every raw image into ``out_dir``; copy rejects to ``rejected_dir``; return the report.

    ``out_dir`` and ``rejected_dir`` should be empty. With ``project_root`` (the stage passes the
    project folder), a raw folder leading outside it is refused before anything is read.
    """
    raw = list_raw_files(raw_dir, project_root)
    images = raw.images
    if not images and not raw.outside:
        raise PipelineError(f"no images in {raw_dir}. Put 10-30 pictures of your character there "
                            f"(PNG or JPEG; optional caption <name>.txt beside each) and run again.")
    user_captions, caption_warnings = read_user_captions(raw.metadata, images, raw.captions)
    workers = params.workers or os.cpu_count() or 1
    results: list[tuple[_Decoded, int | None, bytes | None]] = []
    progress = Progress("preprocess", len(images), "image")
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(images)))) as pool:
        futures = [pool.submit(_decode_and_hash, path, params) for path in images]
        for index, future in enumerate(futures):
            results.append(future.result())
            progress.advance(images[index].name)

    accepted: list[Accepted] = []
    rejected = [Rejected(link.name, outside_reason(link, raw_dir), quarantined=False) for link in raw.outside]
    seen_sha: dict[str, str] = {}
    for decoded, image_hash, png in results:
        reason = decoded.reason
        if reason is None and decoded.source_sha256 in seen_sha:
            reason = f"exact duplicate of {seen_sha[decoded.source_sha256]}"
        if reason is None:
            twin = next((a for a in accepted if hamming(a.dhash, image_hash) <= params.duplicate_threshold), None)
            if twin is not None:
                reason = (f"near duplicate of {twin.source} (hash distance {hamming(twin.dhash, image_hash)} <= "
                          f"preprocess.duplicate_threshold {params.duplicate_threshold})")
        if reason is not None:
            rejected.append(Rejected(decoded.source, reason))
            shutil.copy2(raw_dir / decoded.source, rejected_dir / decoded.source)
            continue
        seen_sha[decoded.source_sha256] = decoded.source
        name = f"char_{len(accepted) + 1:03d}"
        (out_dir / f"{name}.png").write_bytes(png)
        with Image.open(out_dir / f"{name}.png") as written:
            size = written.size
        accepted.append(Accepted(decoded.source, decoded.source_sha256, name, size[0], size[1],
                                 decoded.original_size[0], decoded.original_size[1], image_hash,
                                 user_captions.get(decoded.source)))
    if not accepted:
        raise PipelineError(f"none of the {len(images) + len(raw.outside)} files in {raw_dir} could be used; reasons: "
                            + "; ".join(f"{r.source}: {r.reason}" for r in rejected)
                            + f". Copies are in {rejected_dir}. Add usable images and run again.")
    manifest = [asdict(a) for a in accepted]
    write_json(out_dir / "manifest.json", manifest)
    return {
        "raw_files": len(images) + len(raw.outside),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "user_captions": sum(1 for a in accepted if a.user_caption),
        "size": params.size,
        "resize": params.resize,
        "rejects": [asdict(r) for r in rejected],
        "warnings": caption_warnings,
    }
