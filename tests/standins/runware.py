"""A Runware stand-in: the websocket API the ``runware`` SDK speaks (authentication, ping,
modelSearch, modelUpload, imageUpload, imageInference), plus an HTTP server for the images.

Like Runware, modelUpload downloads the adapter from ``downloadURL`` and checks it before the model
turns ``ready``; imageUpload takes an image as a data URI (or plain base64) and answers its image
UUID; imageInference refuses a LoRA that is not registered and a reference image
(``inputs.referenceImages``) that is neither an uploaded image's UUID, a data URI of an image nor a
URL. Point the SDK at it with ``Runware(api_key=..., url=standin.url)``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import threading
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image
from websockets.asyncio.server import serve

AIR_PATTERN = r"[a-z0-9_-]+:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+"


@dataclass
class RunwareFault:
    """For the next ``count`` tasks of ``task_type``: ``drop`` the websocket, answer an ``error``
    (a server-side failure), or wait ``delay`` seconds first."""

    task_type: str
    count: int = 1
    drop: bool = False
    error: bool = False
    delay: float = 0.0


@dataclass
class Model:
    air: str
    name: str
    version: str
    category: str
    architecture: str
    private: bool
    unique_identifier: str = ""
    positive_trigger_words: str = ""
    extra: dict = field(default_factory=dict)

    def as_result(self) -> dict:
        return {"air": self.air, "name": self.name, "version": self.version, "category": self.category,
                "architecture": self.architecture, "private": self.private, "tags": [], "heroImage": "",
                "comment": "", "positiveTriggerWords": self.positive_trigger_words, "status": "ready"}


class RunwareStandIn:
    """Run with ``with RunwareStandIn(api_key) as runware:``; ``runware.url`` is the websocket URL.

    ``base_architecture`` is what modelSearch reports for the FLUX.2 Klein base models; the real value
    is looked up the same way at publish time, never assumed.
    """

    def __init__(self, api_key: str, base_architecture: str = "flux2klein4b") -> None:
        self.api_key = api_key
        self.models: dict[str, Model] = {
            "runware:400@5": Model("runware:400@5", "FLUX.2 [klein] 4B Base", "1.0", "checkpoint", base_architecture, False),
            "runware:400@3": Model("runware:400@3", "FLUX.2 [klein] 9B Base", "1.0", "checkpoint", "flux2klein9b", False),
        }
        self.tasks: list[dict] = []  # every task received, in order (the api key is masked)
        self.faults: list[RunwareFault] = []
        self.images: dict[str, bytes] = {}  # generated and uploaded images by UUID (served over HTTP)
        self.uploads: dict[str, bytes] = {}  # imageUpload: UUID -> the uploaded file's bytes
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._image_handler())
        self.image_base = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.url = ""

    def __enter__(self) -> "RunwareStandIn":
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._http.shutdown()
        self._http.server_close()

    def inject(self, fault: RunwareFault) -> None:
        with self._lock:
            self.faults.append(fault)

    def tasks_of(self, task_type: str) -> list[dict]:
        return [task for task in self.tasks if task.get("taskType") == task_type]

    # --- server -------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._connection, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1"
            self._ready.set()
            await self._stop

    def _take_fault(self, task_type: str) -> RunwareFault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.task_type == task_type:
                    fault.count -= 1
                    return fault
        return None

    async def _connection(self, websocket) -> None:
        authenticated = False
        async for message in websocket:
            for task in json.loads(message):
                task_type = task.get("taskType")
                self.tasks.append({**task, **({"apiKey": "***"} if "apiKey" in task else {})})
                if task_type == "ping":
                    await websocket.send(json.dumps({"data": [{"taskType": "ping", "pong": True}]}))
                    continue
                if task_type == "authentication":
                    if task.get("apiKey") != self.api_key:
                        await websocket.send(json.dumps({"errors": [{"taskType": "authentication", "code": "invalidApiKey",
                                                                     "message": "Invalid API key"}]}))
                        continue
                    authenticated = True
                    session = task.get("connectionSessionUUID") or str(uuid.uuid4())
                    await websocket.send(json.dumps({"data": [{"taskType": "authentication", "connectionSessionUUID": session}]}))
                    continue
                if not authenticated:
                    await websocket.send(json.dumps({"errors": [{"taskType": task_type, "code": "missingApiKey",
                                                                 "message": "Authenticate first", "taskUUID": task.get("taskUUID")}]}))
                    continue
                fault = self._take_fault(task_type)
                if fault is not None:
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.drop:
                        await websocket.close()
                        return
                    if fault.error:
                        await websocket.send(json.dumps({"errors": [{"taskType": task_type, "taskUUID": task.get("taskUUID"),
                                                                     "code": "internalServerError",
                                                                     "message": "injected server error, try again"}]}))
                        continue
                handler = {"modelSearch": self._model_search, "modelUpload": self._model_upload,
                           "imageUpload": self._image_upload, "imageInference": self._image_inference}.get(task_type)
                if handler is None:
                    await websocket.send(json.dumps({"errors": [{"taskType": task_type, "taskUUID": task.get("taskUUID"),
                                                                 "code": "unsupportedTaskType", "message": f"{task_type}?"}]}))
                    continue
                for reply in await handler(task):
                    await websocket.send(json.dumps(reply))

    async def _model_search(self, task: dict) -> list[dict]:
        search = (task.get("search") or "").lower()
        found = [m.as_result() for m in self.models.values()
                 if (not search or search in m.air.lower() or search in m.name.lower())
                 and (not task.get("category") or task["category"] == m.category)]
        return [{"data": [{"taskType": "modelSearch", "taskUUID": task["taskUUID"], "results": found,
                           "totalResults": len(found)}]}]

    async def _model_upload(self, task: dict) -> list[dict]:
        def fail(code: str, message: str) -> list[dict]:
            return [{"errors": [{"taskType": "modelUpload", "taskUUID": task["taskUUID"], "code": code,
                                 "message": message, "status": "error"}]}]

        known_architectures = {m.architecture for m in self.models.values() if m.category == "checkpoint"}
        if task.get("architecture") not in known_architectures:
            return fail("invalidArchitecture", f"architecture {task.get('architecture')!r} is not one of {sorted(known_architectures)}")
        if task.get("category") != "lora":
            return fail("invalidCategory", "this stand-in takes LoRAs only")
        if not re.fullmatch(AIR_PATTERN, task.get("air") or ""):
            return fail("invalidAir", f"air {task.get('air')!r} is not source:id@version")
        existing = self.models.get(task["air"])
        if existing is not None:
            return fail("existingAir", f"{task['air']} is already registered")
        try:  # Runware fetches the file itself: the URL must resolve without credentials
            data = await asyncio.get_running_loop().run_in_executor(None, _download, task["downloadURL"])
        except Exception as error:  # noqa: BLE001 (any download failure is the uploader's error to report)
            return fail("downloadFailed", f"could not download {task['downloadURL']}: {error}")
        if hashlib.sha256(data).hexdigest()[: len(task["uniqueIdentifier"])] != task["uniqueIdentifier"]:
            return fail("uniqueIdentifierMismatch", "the downloaded file does not match uniqueIdentifier")
        self.models[task["air"]] = Model(task["air"], task["name"], task["version"], "lora", task["architecture"],
                                         bool(task.get("private")), task["uniqueIdentifier"],
                                         task.get("positiveTriggerWords") or "")
        return [{"data": [{"taskType": "modelUpload", "taskUUID": task["taskUUID"], "status": status, "air": task["air"],
                           "message": f"model {status}"}]} for status in ("downloading", "optimizing", "ready")]

    async def _image_upload(self, task: dict) -> list[dict]:
        data = _image_bytes(task.get("image") or "")
        if data is None:
            return [{"errors": [{"taskType": "imageUpload", "taskUUID": task["taskUUID"], "code": "invalidImage",
                                 "message": "image must be a data URI or base64 of a PNG, JPG or WEBP"}]}]
        image_uuid = str(uuid.uuid4())
        self.uploads[image_uuid] = self.images[image_uuid] = data
        return [{"data": [{"taskType": "imageUpload", "taskUUID": task["taskUUID"], "imageUUID": image_uuid,
                           "imageURL": f"{self.image_base}/images/{image_uuid}.png"}]}]

    async def _image_inference(self, task: dict) -> list[dict]:
        for reference in (task.get("inputs") or {}).get("referenceImages") or []:
            if not (reference in self.uploads or re.match(r"https?://", str(reference))
                    or _image_bytes(str(reference)) is not None):
                return [{"errors": [{"taskType": "imageInference", "taskUUID": task["taskUUID"],
                                     "code": "invalidReferenceImages",
                                     "message": f"reference image {str(reference)[:60]!r} is not an uploaded image "
                                                "UUID, a data URI or a URL"}]}]
        for lora in task.get("lora") or []:
            model = self.models.get(lora.get("model"))
            if model is None or model.category != "lora":
                return [{"errors": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "code": "modelNotFound",
                                     "message": f"LoRA {lora.get('model')} not found"}]}]
        if task.get("model") not in self.models:
            return [{"errors": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "code": "modelNotFound",
                                 "message": f"model {task.get('model')} not found"}]}]
        image_uuid = str(uuid.uuid4())
        seed = int(task.get("seed") or 0)
        buffer = io.BytesIO()
        Image.new("RGB", (int(task.get("width") or 64) // 8, int(task.get("height") or 64) // 8),
                  (seed % 256, 80, 160)).save(buffer, "PNG")
        self.images[image_uuid] = buffer.getvalue()
        return [{"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": image_uuid,
                           "imageURL": f"{self.image_base}/images/{image_uuid}.png", "seed": seed, "cost": 0.0019}]}]

    def _image_handler(self) -> type[BaseHTTPRequestHandler]:
        images = self.images

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                match = re.fullmatch(r"/images/([0-9a-f-]+)\.png", self.path)
                data = images.get(match.group(1)) if match else None
                self.send_response(200 if data else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        return Handler


def _image_bytes(value: str) -> bytes | None:
    """The image in a data URI or plain base64 string, or None when it is not one PIL can open."""
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        data = base64.b64decode(value, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (binascii.Error, ValueError, OSError):
        return None
    return data


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (127.0.0.1 in tests)
        return response.read()
