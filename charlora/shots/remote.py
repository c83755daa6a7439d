"""``make shots REMOTE=runware``: the same story on Runware, with the LoRA that `make publish` registered there.

The LoRA's AIR, its base model and the adapter's sha256 come from ``metrics/publish.json``; with
nothing registered yet it refuses before it checks credentials or opens a connection. Runware hosts
the real FLUX.2 Klein, so the story's sizes are used as written (768x1344 stays 768x1344) and null
steps and guidance take the real model's values. Each distinct reference image is prepared (upright,
RGB, at most 1 MP, as on this machine) and uploaded once per run with Runware's ``imageUpload``; the
shots send the returned image UUIDs in ``inputs.referenceImages``. Connections, retries, timeouts and
secret handling are publish's (:class:`~charlora.publish.runware.RunwareClient`, ``publish.retries``,
``publish.backoff_s``, ``publish.runware.timeout_s``). Images land in ``models/shots/runware/``, the
cache in ``data/cache/shots_runware/`` (the same rules as on this machine) and the manifest in
``metrics/shots_runware.json``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from charlora import layout
from charlora.errors import PipelineError
from charlora.fileio import read_json, sha256_file
from charlora.models.registry import BASE_MODELS, SampleDefaults, get_base_model
from charlora.params import Params
from charlora.progress import Progress
from charlora.publish.credentials import Credentials, require
from charlora.publish.retry import RetryPolicy, describe
from charlora.publish.runware import RunwareClient
from charlora.shots.plan import Job, Rendered, Target
from charlora.shots.run import Outputs, shoot
from charlora.shots.story import load_story

REMOTE_OUTPUTS = Outputs(layout.REMOTE_SHOTS_DIR, layout.REMOTE_SHOT_CACHE_DIR, layout.REMOTE_SHOTS_MANIFEST_FILE)
REGISTERED = ("registered", "already registered")


def published_lora(manifest_file: Path = layout.PUBLISH_MANIFEST_FILE) -> dict[str, Any]:
    """What `make publish` registered on Runware (``metrics/publish.json``); refuses clearly when nothing was."""
    what_to_do = "Publish first: `make publish` (README: Publishing); nothing was sent."
    if not manifest_file.is_file():
        raise PipelineError(f"nothing has been published yet ({manifest_file} is missing), so there is no LoRA on "
                            f"Runware to render the story with. {what_to_do}")
    manifest = read_json(manifest_file)
    runware = manifest.get("runware") or {}
    if runware.get("status") not in REGISTERED or not runware.get("air"):
        raise PipelineError(f"nothing is registered on Runware yet: {manifest_file} says runware status "
                            f"'{runware.get('status', 'not started')}'. {what_to_do}")
    return {"air": runware["air"], "base_model": (manifest.get("inference") or {}).get("model"),
            "adapter": manifest.get("adapter") or {}}


def real_sampling(base_air: str) -> SampleDefaults:
    """Sampling defaults of the real model Runware hosts as ``base_air`` (Klein Base 4B's if none matches)."""
    real = [spec for spec in BASE_MODELS.values() if spec.sampling.shot_scale == 1.0]
    return next((spec.sampling for spec in real if spec.runware_air == base_air), real[0].sampling)


class RunwareRenderer:
    """Renders jobs on Runware: references uploaded once per run, the LoRA at the story's scale."""

    def __init__(self, client: RunwareClient, target: Target, redact: Callable[[str], str]) -> None:
        self.client, self.target, self.redact = client, target, redact
        self.uploaded: dict[Path, str] = {}
        self._downloads = tempfile.TemporaryDirectory(prefix="charlora-runware-")  # removed with the renderer
        self.folder = Path(self._downloads.name)

    def _upload(self, path: Path) -> str:
        if path not in self.uploaded:
            self.uploaded[path] = self.client.upload_image(path)
        return self.uploaded[path]

    def render(self, job: Job, references: list[Path]) -> Rendered:
        """Render ``job`` on Runware; the shots before a failure stay cached for the next run."""
        out = self.folder / f"{job.key}.png"
        try:
            uuids = [self._upload(path) for path in references]
            self.client.generate(self.target.base_model, self.target.adapter["air"], job.lora_scale, job.prompt,
                                 width=job.width, height=job.height, steps=job.steps, guidance=job.guidance,
                                 seed=job.seed, out=out, references=uuids)
        except PipelineError:
            raise
        except Exception as error:  # noqa: BLE001 (retries are spent: say what failed, without secrets)
            raise PipelineError(f"Runware could not render shot '{job.shot.id}': {self.redact(describe(error))}. The "
                                "shots rendered before it are cached; run `make shots REMOTE=runware` again to "
                                "finish.") from None
        with Image.open(out) as image:
            rendered = Rendered(image.convert("RGB"))
        out.unlink()
        return rendered

    def describe(self, job: Job) -> str:
        """How a job is sent."""
        count = len(job.references)
        return "imageInference" + (f", {count} reference(s) by imageUpload UUID" if count else "")


def run_remote(params: Params, credentials: Credentials, report: Callable[[str], None],
               root: Path = Path(".")) -> dict[str, Any]:
    """``make shots REMOTE=runware``: the story on Runware with the published LoRA (``metrics/shots_runware.json``)."""
    story = load_story(layout.STORY_FILE, params.character.trigger, root)
    published = published_lora()
    require(credentials, ["RUNWARE_API_KEY"])
    best = layout.LORA_DIR / f"{params.character.name}-best.safetensors"
    if best.is_file() and sha256_file(best) != published["adapter"].get("sha256"):
        report(f"note: {best} has changed since it was published; Runware renders with the published LoRA "
               f"{published['air']}. `make publish` publishes the new one.")
    base_air = (published["base_model"] or params.publish.runware.base_model
                or get_base_model(params.base_model.name).runware_air)
    adapter = {"file": str(published["adapter"].get("file")), "sha256": str(published["adapter"].get("sha256")),
               "air": published["air"]}
    target = Target("runware", base_air, real_sampling(base_air), adapter, f"{adapter['air']} {adapter['sha256']}",
                    "runware")
    settings = params.publish.runware

    def open_renderer(progress: Progress) -> RunwareRenderer:
        client = RunwareClient(credentials.get("RUNWARE_API_KEY"), credentials.get("RUNWARE_URL"), settings.timeout_s,
                               RetryPolicy(params.publish.retries, params.publish.backoff_s), progress.say,
                               credentials.redact)
        return RunwareRenderer(client, target, credentials.redact)

    return shoot(story, target, open_renderer, REMOTE_OUTPUTS)
