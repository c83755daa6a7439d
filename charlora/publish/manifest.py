"""``metrics/publish.json``: what `make publish` did, rewritten after every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charlora.fileio import read_json, utc_now, write_json
from charlora.publish.release import Release


class Manifest:
    """The publish manifest, saved after every change so it always says what has happened."""

    def __init__(self, path: Path, release: Release) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "dry_run": False, "character": release.character, "started_at": utc_now(),
            "adapter": {"file": str(release.adapter.source), "sha256": release.adapter.sha256, "size": release.adapter.size},
            "hf": {"status": "not started"}, "runware": {"status": "not started"},
            "inference": {"status": "not started"}, "timings_s": {}, "error": None,
        }
        previous = read_json(path) if path.is_file() else {}
        # A rerun for the same adapter keeps the images it already has (not paid for twice).
        if previous.get("adapter", {}).get("sha256") == release.adapter.sha256:
            self.previous_inference = previous.get("inference", {})
        else:
            self.previous_inference = {}
        self.save()

    def update(self, section: str, **values: Any) -> None:
        """Merge ``values`` into ``section`` and save."""
        self.data[section].update(values)
        self.save()

    def time(self, name: str, seconds: float) -> None:
        """Record a step's duration under ``timings_s`` and save."""
        self.data["timings_s"][name] = round(seconds, 2)
        self.save()

    def save(self) -> None:
        """Write the manifest (atomically)."""
        write_json(self.path, self.data)

    def finish(self, error: str | None = None) -> None:
        """Record the end (or the error) and save."""
        if error is None:
            self.data["finished_at"] = utc_now()
        else:
            self.data["error"] = error
        self.save()
