"""Runware side of publish: register the adapter as a LoRA, then a test inference with it.

Each call gets a fresh SDK connection under our own time limit: the SDK waits for an answer that a
dropped websocket never brings, so a timeout here means "reconnect and try again". Registration
is idempotent by AIR: before uploading, modelSearch looks for the AIR, so a rerun (or a retry after
an answer that got lost) registers nothing new.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from runware import IImageInference, IInputs, ILora, IModelSearch, IUploadModelLora, Runware
from runware.utils import BASE_RUNWARE_URLS, Environment, RunwareAPIError

from charlora.errors import PipelineError
from charlora.fileio import write_bytes_atomic
from charlora.publish.retry import RetryPolicy

T = TypeVar("T")
DEFAULT_URL = BASE_RUNWARE_URLS[Environment.PRODUCTION]
# Values in the SDK's EModelArchitecture enum are all FLUX.1 / SD families: registering a FLUX.2 Klein
# LoRA under one of them would pair it with the wrong base model.
FLUX1_AND_SD_ARCHITECTURES = {"flux1d", "flux1s", "flux1kontextdev", "sdxl", "sd1x", "sd1xlcm", "sd3", "sdhyper",
                              "sdxllcm", "sdxllightning", "sdxlhyper", "pony"}
PERMANENT_ERROR_CODES = {"invalidApiKey", "invalidArchitecture", "invalidAir", "existingAir", "modelNotFound",
                         "uniqueIdentifierMismatch", "downloadFailed", "invalidCategory", "insufficientCredits"}


@dataclass(frozen=True)
class LoraRegistration:
    """What Runware's modelUpload gets for one LoRA version."""

    air: str
    architecture: str
    name: str
    version: str
    download_url: str
    unique_identifier: str
    trigger: str
    weight: float
    private: bool
    tags: list[str]
    description: str
    hero_image_url: str | None = None

    def payload(self) -> dict[str, Any]:
        """What modelUpload sends (no secrets: the API key travels in the authentication task only)."""
        return {"category": "lora", "air": self.air, "architecture": self.architecture, "name": self.name,
                "version": self.version, "downloadURL": self.download_url, "uniqueIdentifier": self.unique_identifier,
                "format": "safetensors", "private": self.private, "positiveTriggerWords": self.trigger,
                "defaultWeight": self.weight, "tags": self.tags, "shortDescription": self.description,
                "heroImageURL": self.hero_image_url}


def is_transient(error: BaseException) -> bool:
    """Worth retrying: timeouts, dropped connections, server-side failures; not a rejected request."""
    if isinstance(error, RunwareAPIError):
        return error.code not in PERMANENT_ERROR_CODES
    return isinstance(error, (TimeoutError, asyncio.TimeoutError, ConnectionError, OSError))


class RunwareClient:
    """Runs Runware tasks, one connection per attempt, each bounded by ``timeout_s``."""

    def __init__(self, api_key: str, url: str | None, timeout_s: float, retry: RetryPolicy,
                 report: Callable[[str], None], redact: Callable[[str], str]) -> None:
        self._api_key, self.url, self.timeout_s = api_key, url or DEFAULT_URL, timeout_s
        self.retry, self.report, self.redact = retry, report, redact

    def _run(self, what: str, task: Callable[[Runware], Awaitable[T]]) -> T:
        async def attempt() -> T:
            client = Runware(api_key=self._api_key, url=self.url, timeout=int(self.timeout_s * 1000),
                             log_level=logging.CRITICAL)
            try:
                await asyncio.wait_for(client.connect(), self.timeout_s)
                return await asyncio.wait_for(task(client), self.timeout_s)
            finally:
                await _quietly_disconnect(client)

        return self.retry.run(lambda: asyncio.run(attempt()), what=f"runware: {what}", transient=is_transient,
                              report=self.report, redact=self.redact)

    def find_model(self, air: str) -> dict[str, Any] | None:
        """The model registered under ``air`` (as modelSearch reports it), or None."""
        return self._run(f"search {air}", lambda client: _search(client, air))

    def resolve_architecture(self, base_air: str, wanted: str) -> str:
        """The architecture Runware uses for ``base_air``; ``wanted`` (unless ``auto``) must equal it."""
        if wanted in FLUX1_AND_SD_ARCHITECTURES:
            raise PipelineError(f"publish.runware.architecture '{wanted}' is a FLUX.1/SD architecture, not FLUX.2 Klein. "
                                "Set it to auto (looked up from the base model on Runware).")
        base = self.find_model(base_air)
        if base is None or not base.get("architecture"):
            raise PipelineError(f"Runware's modelSearch does not know the base model {base_air} "
                                "(publish.runware.base_model). Check the AIR on https://runware.ai/docs/models.")
        if wanted != "auto" and wanted != base["architecture"]:
            raise PipelineError(f"publish.runware.architecture is '{wanted}', but Runware reports '{base['architecture']}' "
                                f"for {base_air}; nothing was registered. Set it to auto or to '{base['architecture']}'.")
        return base["architecture"]

    def register(self, lora: LoraRegistration) -> list[str]:
        """Upload the LoRA and wait until Runware says it is ready; returns the statuses seen."""
        request = IUploadModelLora(**{k: v for k, v in lora.payload().items() if k != "category"})

        attempts = 0

        async def upload(client: Runware) -> list[str]:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and await _search(client, lora.air):  # the last try registered it; its answer was lost
                return ["ready (found on retry)"]
            results = await client.modelUpload(request)
            return [str(item.get("status")) for item in results or []]

        return self._run(f"register {lora.air}", upload)

    def upload_image(self, path: Path) -> str:
        """Upload a local image (Runware's ``imageUpload``); returns its image UUID for later tasks."""
        async def upload(client: Runware) -> str:
            return (await client.uploadImage(str(path))).imageUUID

        return self._run(f"upload {path.name}", upload)

    def generate(self, base_air: str, lora_air: str, weight: float, prompt: str, *, width: int, height: int,
                 steps: int, guidance: float, seed: int, out: Path, references: list[str] | None = None) -> dict[str, Any]:
        """One image with the LoRA, downloaded to ``out``; returns what Runware said about it.

        ``references``: reference images for FLUX.2's in-context conditioning (``inputs.referenceImages``),
        as image UUIDs from :meth:`upload_image`, URLs or data URIs.
        """
        request = dict(model=base_air, positivePrompt=prompt, width=width, height=height, steps=steps, CFGScale=guidance,
                       seed=seed, numberResults=1, outputType="URL", outputFormat="PNG",
                       lora=[ILora(model=lora_air, weight=weight)])
        if references:
            request["inputs"] = IInputs(referenceImages=list(references))

        async def infer(client: Runware) -> Any:
            return (await client.imageInference(IImageInference(**request)))[0]

        image = self._run(f"image for '{prompt[:40]}'", infer)
        data = self.retry.run(lambda: _download(image.imageURL, self.timeout_s), what="runware: image download",
                              transient=download_is_transient, report=self.report, redact=self.redact)
        write_bytes_atomic(out, data)
        return {"prompt": prompt, "seed": seed, "image": str(out), "image_uuid": image.imageUUID, "cost": image.cost}


async def _search(client: Runware, air: str) -> dict[str, Any] | None:
    for model in (await client.modelSearch(IModelSearch(search=air, visibility="all"))).results or []:
        found = model if isinstance(model, dict) else vars(model)
        if found.get("air") == air:
            return found
    return None


async def _quietly_disconnect(client: Runware) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except Exception:  # noqa: BLE001 (a connection that is already gone has nothing to close)
        pass


def download_is_transient(error: BaseException) -> bool:
    """Worth retrying a download: a dropped connection, a timeout or a 5xx; never a 4xx (it will not change)."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def _download(url: str, timeout_s: float) -> bytes:
    """The bytes at ``url`` (an image URL from Runware's answer); an HTTP error status raises."""
    response = httpx.get(url, timeout=timeout_s, follow_redirects=True)
    response.raise_for_status()
    return response.content
