"""Hugging Face Hub side of publish: one commit with the adapter, samples and model card.

Idempotency lives in the repo itself: ``versions.json`` lists every published adapter by sha256,
so a rerun (from any clone) finds the adapter already there and uploads nothing, and a new
adapter becomes the next version.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_url
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)

from charlora.errors import PipelineError
from charlora.publish.retry import RetryPolicy

VERSIONS_FILE = "versions.json"


@dataclass(frozen=True)
class UploadFile:
    """A local file and where it goes in the repo."""

    source: Path
    path_in_repo: str
    size: int
    sha256: str


@dataclass(frozen=True)
class HubRelease:
    """A published version: repo, version number and the commit that holds it."""

    repo_id: str
    version: int
    commit: str
    uploaded: bool  # False: this adapter was already in the repo, nothing was sent
    download_url: str  # the adapter, pinned to ``commit``

    def file_url(self, endpoint: str, path_in_repo: str) -> str:
        """The download URL of ``path_in_repo``, pinned to this release's commit."""
        return hf_hub_url(self.repo_id, path_in_repo, revision=self.commit, endpoint=endpoint)


def is_transient(error: BaseException) -> bool:
    """Worth retrying: a server error, rate limiting, a timeout or a dropped connection."""
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code in (408, 429)
    return isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError))


class HubPublisher:
    """Publishes to one repo through ``huggingface_hub`` with retries."""

    def __init__(self, api: HfApi, repo_id: str, retry: RetryPolicy, report: Callable[[str], None],
                 redact: Callable[[str], str]) -> None:
        self.api, self.repo_id, self.retry, self.report, self.redact = api, repo_id, retry, report, redact

    def _call(self, what: str, call: Callable[[], object]) -> object:
        return self.retry.run(call, what=f"hub: {what}", transient=is_transient, report=self.report, redact=self.redact)

    def release(self, adapter: UploadFile, extra_files: list[UploadFile], card: Callable[[int], str],
                private: bool) -> HubRelease:
        """Create the repo if needed and commit the adapter, ``extra_files`` and ``card(version)`` in one
        commit, unless this adapter (by sha256) is already published there."""
        self._call("create repo", lambda: self.api.create_repo(self.repo_id, private=private, exist_ok=True))
        versions = self._read_versions()
        known = next((entry for entry in versions if entry["sha256"] == adapter.sha256), None)
        if known is not None:
            return self._complete(adapter, extra_files, known["version"], card)
        version = max((entry["version"] for entry in versions), default=0) + 1
        versions = [*versions, {"version": version, "sha256": adapter.sha256, "file": adapter.path_in_repo}]
        return self._commit(version, [adapter, *extra_files], card, f"Publish {adapter.path_in_repo} version {version}",
                            adapter, extra=[CommitOperationAdd(VERSIONS_FILE, (json.dumps(versions, indent=2) + "\n").encode("utf-8"))])

    def _complete(self, adapter: UploadFile, extra_files: list[UploadFile], version: int,
                  card: Callable[[int], str]) -> HubRelease:
        """An adapter already published: add the files its version lacks (say, exports that a version of this
        pipeline from before the export stage did not upload), else send nothing."""
        commit = self._commit_holding(adapter)
        missing = [f for f in extra_files if not self._call(f"check {f.path_in_repo}", lambda f=f: self.api.file_exists(
            self.repo_id, f.path_in_repo, revision=commit))]
        if not missing:
            self.report(f"hub: {adapter.path_in_repo} (sha256 {adapter.sha256[:12]}) is already version {version} "
                        f"in {self.repo_id}; nothing uploaded")
            return HubRelease(self.repo_id, version, commit, False, self._url(commit, adapter.path_in_repo))
        self.report(f"hub: {adapter.path_in_repo} is already version {version} in {self.repo_id}, which lacks "
                    f"{', '.join(f.path_in_repo for f in missing)}; adding them")
        return self._commit(version, missing, card, f"Add {len(missing)} files to {adapter.path_in_repo} version {version}",
                            adapter)

    def _commit(self, version: int, files: list[UploadFile], card: Callable[[int], str], message: str,
                adapter: UploadFile, extra: list[CommitOperationAdd] | None = None) -> HubRelease:
        operations = [CommitOperationAdd(f.path_in_repo, str(f.source)) for f in files]
        operations += [CommitOperationAdd("README.md", card(version).encode("utf-8")), *(extra or [])]
        total_mb = sum(f.size for f in files) / 1e6
        self.report(f"hub: uploading version {version} to {self.repo_id}: {len(operations)} files, {total_mb:.1f} MB")
        info = self._call("commit", lambda: self.api.create_commit(
            self.repo_id, operations, commit_message=message, commit_description=f"sha256 {adapter.sha256}"))
        return HubRelease(self.repo_id, version, info.oid, True, self._url(info.oid, adapter.path_in_repo))

    def _url(self, commit: str, path_in_repo: str) -> str:
        return hf_hub_url(self.repo_id, path_in_repo, revision=commit, endpoint=self.api.endpoint)

    def _read_versions(self) -> list[dict]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self._call(f"read {VERSIONS_FILE}", lambda: self.api.hf_hub_download(
                    self.repo_id, VERSIONS_FILE, local_dir=tmp))
            except (EntryNotFoundError, RemoteEntryNotFoundError, RevisionNotFoundError):  # nothing published yet
                return []
            try:
                versions = json.loads(Path(path).read_text(encoding="utf-8"))
            except ValueError:
                versions = None
            if not isinstance(versions, list) or not all(isinstance(v, dict) and {"version", "sha256"} <= set(v)
                                                         for v in versions):
                raise PipelineError(f"{VERSIONS_FILE} in {self.repo_id} is not the list this pipeline writes; fix or "
                                    f"delete it on the Hub, or publish to another repo (HF_REPO_ID).")
            return versions

    def _commit_holding(self, adapter: UploadFile) -> str:
        """The newest commit whose ``adapter.path_in_repo`` is this adapter (for the pinned URL)."""
        url = hf_hub_url(self.repo_id, adapter.path_in_repo, revision="main", endpoint=self.api.endpoint)
        metadata = self._call("read file metadata", lambda: self.api.get_hf_file_metadata(url=url))
        if metadata.etag != adapter.sha256 or not metadata.commit_hash:
            raise PipelineError(
                f"{self.repo_id} lists this adapter (sha256 {adapter.sha256[:12]}) as published, but main now holds a "
                f"different {adapter.path_in_repo}. Its pinned URL is in the manifest of the run that published it; "
                f"to publish it again as a new version, remove it from {VERSIONS_FILE} on the Hub.")
        return metadata.commit_hash


def open_hub(endpoint: str | None, token: str) -> HfApi:
    """An ``HfApi`` for ``endpoint`` (None: huggingface.co or ``HF_ENDPOINT``)."""
    return HfApi(endpoint=endpoint, token=token, library_name="story-shorts-character-lora")


def explain_hub_error(error: Exception, repo_id: str) -> str:
    """A user-facing sentence for a Hub error that retries did not fix."""
    if isinstance(error, RepositoryNotFoundError):
        return f"Hugging Face repo {repo_id} was not found or the token cannot see it. Check HF_REPO_ID and HF_TOKEN."
    if isinstance(error, HfHubHTTPError) and error.response is not None and error.response.status_code in (401, 403):
        return (f"Hugging Face refused the token for {repo_id} (HTTP {error.response.status_code}). Use a token with "
                "write access (https://huggingface.co/settings/tokens) in HF_TOKEN.")
    return f"Hugging Face upload to {repo_id} failed: {error}. Run `make publish` again to finish; it resumes."
