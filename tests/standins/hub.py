"""A Hugging Face Hub stand-in: the endpoints ``huggingface_hub`` uses to create a repo, commit files
(regular and LFS, basic transfer) and download them, with tokens checked like the Hub does.

Point the client at it with ``HfApi(endpoint=hub.url)`` / ``HF_ENDPOINT`` and ``HF_HUB_DISABLE_XET=1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``method`` and ``path`` (a regex) with ``status``,
    or hold them ``delay`` seconds (a timeout seen from the client)."""

    method: str
    path: str
    status: int = 503
    count: int = 1
    delay: float = 0.0


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    history: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files at that commit


class HubStandIn:
    """Run with ``with HubStandIn(token) as hub:``; ``hub.url`` is the endpoint."""

    def __init__(self, token: str, user: str = "standin-user") -> None:
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.method == method and re.search(fault.path, path):
                    fault.count -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:  # quiet: tests read hub.requests instead
                pass

            def _reply(self, status: int, body: object = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if not isinstance(body, bytes):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                headers = {"X-Error-Message": message}
                if code:
                    headers["X-Error-Code"] = code
                self._reply(status, {"error": message}, headers)

            def _body(self) -> bytes:
                return self.raw_body

            def _authorized(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {hub.token}"

            def _dispatch(self) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                self.raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = hub._take_fault(self.command, path)
                if fault is not None:
                    if fault.delay:
                        time.sleep(fault.delay)
                    else:
                        return self._error(fault.status, f"injected fault {fault.status}")
                for method, pattern, action in ROUTES:
                    match = re.fullmatch(pattern, path)
                    if match and self.command in method:
                        return action(self, *match.groups())
                self._error(404, f"no route for {self.command} {path}")

            do_GET = do_POST = do_PUT = do_HEAD = _dispatch

            # --- routes -------------------------------------------------------------------------
            def whoami(self) -> None:
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                self._reply(200, {"type": "user", "name": hub.user, "auth": {"type": "access_token"}})

            def create_repo(self) -> None:
                payload = json.loads(self._body() or b"{}")
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
                if repo_id in hub.repos:  # like the Hub, the conflict answer still carries the repo url
                    return self._reply(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"},
                                       {"X-Error-Message": "You already created this model repo"})
                repo = hub.repos[repo_id] = Repo(private=bool(payload.get("private")))
                # Like the Hub: a new repo starts with one commit holding .gitattributes.
                initial = hashlib.sha1(repo_id.encode()).hexdigest()
                repo.files = repo.history[initial] = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
                repo.commits.append(initial)
                self._reply(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

            def validate_yaml(self) -> None:
                self._body()
                self._reply(200, {"errors": [], "warnings": []})

            def preupload(self, repo_id: str, _revision: str) -> None:
                payload = json.loads(self._body())
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                if repo_id not in hub.repos:
                    return self._error(404, "Repository not found", "RepoNotFound")
                files = [{"path": f["path"], "uploadMode": "lfs" if _is_lfs(f["path"]) else "regular",
                          "shouldIgnore": False} for f in payload["files"]]
                self._reply(200, {"files": files, "commitOid": _head(hub.repos[repo_id])})

            def lfs_batch(self, repo_id: str) -> None:
                payload = json.loads(self._body())
                objects = []
                for obj in payload["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"]}
                    if obj["oid"] not in hub.lfs:  # already stored: nothing to upload
                        entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                    objects.append(entry)
                self._reply(200, {"transfer": "basic", "objects": objects})

            def lfs_upload(self, oid: str) -> None:
                data = self._body()
                if hashlib.sha256(data).hexdigest() != oid:
                    return self._error(400, "sha256 of the uploaded object does not match its oid")
                hub.lfs[oid] = data
                self._reply(200, {})

            def commit(self, repo_id: str, _revision: str) -> None:
                lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                files = dict(repo.files)
                for line in lines:
                    value = line["value"]
                    if line["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._error(422, f"LFS object {value['oid']} was never uploaded")
                        files[value["path"]] = hub.lfs[value["oid"]]
                oid = hashlib.sha1(json.dumps(lines, sort_keys=True).encode() + _head(repo).encode()).hexdigest()
                repo.files, repo.history[oid] = files, files
                repo.commits.append(oid)
                self._reply(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})

            def resolve(self, repo_id: str, revision: str, file_path: str) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None or (repo.private and not self._authorized()):
                    return self._error(404, "Repository not found", "RepoNotFound")
                commit = _head(repo) if revision == "main" else revision
                files = repo.history.get(commit)
                if files is None:
                    return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
                if file_path not in files:
                    return self._error(404, f"{file_path} does not exist", "EntryNotFound")
                data = files[file_path]
                etag = hashlib.sha256(data).hexdigest() if _is_lfs(file_path) else hashlib.sha1(data).hexdigest()
                self._reply(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"',
                                        "Content-Type": "application/octet-stream"})

        ROUTES = [
            ("GET", r"/api/whoami-v2", Handler.whoami),
            ("POST", r"/api/repos/create", Handler.create_repo),
            ("POST", r"/api/validate-yaml", Handler.validate_yaml),
            ("POST", r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", Handler.preupload),
            ("POST", r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", Handler.lfs_batch),
            ("PUT", r"/lfs-upload/([0-9a-f]{64})", Handler.lfs_upload),
            ("POST", r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", Handler.commit),
            (("GET", "HEAD"), r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", Handler.resolve),
        ]
        return Handler


def _is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".png", ".jpg", ".bin"))


def _head(repo: Repo) -> str:
    return repo.commits[-1] if repo.commits else "0" * 40
