"""Rendered shots by cache key (:mod:`charlora.shots.plan`), kept between runs like the caption cache.

An entry is ``<key>.png`` (the image as rendered) and ``<key>.json`` (when, where, how long it took);
the JSON is written last, so an entry with both files is complete. Editing one shot of a story
changes one key: one image renders, every other comes from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charlora.fileio import read_json, write_bytes_atomic, write_json


class ShotCache:
    """The cache folder: ``get`` an entry's record by key, ``put`` a rendered image with its record."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def image(self, key: str) -> Path:
        """Where the image of ``key`` is (or goes)."""
        return self.folder / f"{key}.png"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of a complete entry, or None."""
        record = self.folder / f"{key}.json"
        if not (record.is_file() and self.image(key).is_file()):
            return None
        try:
            return read_json(record)
        except ValueError:  # a damaged record: render again
            return None

    def put(self, key: str, png: bytes, record: dict[str, Any]) -> None:
        """Store a rendered image and its record (image first, record last)."""
        write_bytes_atomic(self.image(key), png)
        write_json(self.folder / f"{key}.json", record)
