"""A small local stand-in for the Hugging Face Hub: the endpoints `huggingface_hub` calls to push a folder.

Speaks HTTP on 127.0.0.1 (ephemeral port) in a background thread, keeps repositories in memory, and stops
itself after `lifetime` seconds in case a test forgets to. Covered: whoami, repo creation and info, branches
and refs, README metadata validation, preupload, commit (regular and LFS files), the LFS batch/upload/verify
protocol (when `lfs=True`), and pull requests. `fail(status, *routes)` makes routes answer an error.

    with FakeHub(token="hf_x", user="alice", orgs=("acme",)) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_x"}
        ...
        hub.files("alice/model")  # {path: bytes} on main
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# Files the real Hub routes to LFS by default (.gitattributes of a new repo); the rest is "regular" under 10 MB.
LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".png", ".h5", ".msgpack", ".model")
REGULAR_LIMIT = 10 * 1024 * 1024
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commits: list[dict] = field(default_factory=list)
    prs: list[str] = field(default_factory=list)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(
        self,
        token: str = "hf_testtoken",
        user: str = "alice",
        orgs: tuple[str, ...] = (),
        lfs: bool = False,
        max_file_size: int | None = None,
        lifetime: float = 120.0,
    ):
        self.tokens = {token: user}
        self.user, self.orgs = user, tuple(orgs)
        self.lfs, self.max_file_size = lfs, max_file_size
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unknown: list[tuple[str, str]] = []  # requests no route matched
        self.authorizations: list[str] = []  # Authorization headers received (to check the token was sent)
        self._failures: dict[str | None, int] = {}
        self._lock = threading.Lock()
        self._lifetime = lifetime
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self._lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._timer.cancel()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, status: int | None, *routes: str) -> None:
        """Answer `status` on these routes (every route when none are named); `fail(None)` clears it."""
        with self._lock:
            if status is None:
                self._failures.clear()
            for route in routes or (None,):
                self._failures[route] = status

    def add_repo(self, repo_id: str, owner: str, private: bool = False, files: dict[str, bytes] | None = None) -> None:
        repo = Repo(owner=owner, private=private)
        repo.branches["main"].update(files or {})
        self.repos[repo_id] = repo

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[revision])

    # -- helpers used by the handler ----------------------------------------------------------------------
    def failure_for(self, route: str) -> int | None:
        with self._lock:
            return self._failures.get(route, self._failures.get(None))

    def can_write(self, user: str, repo_id: str) -> bool:
        return repo_id.split("/")[0] in (user, *self.orgs)

    def can_read(self, user: str | None, repo_id: str) -> bool:
        repo = self.repos.get(repo_id)
        return repo is not None and (not repo.private or (user is not None and self.can_write(user, repo_id)))

    def upload_mode(self, path: str, size: int) -> str:
        if self.lfs and (path.endswith(LFS_SUFFIXES) or size > REGULAR_LIMIT):
            return "lfs"
        return "regular"

    def commit(self, repo_id: str, ref: str, lines: list[dict], create_pr: bool) -> tuple[int, dict]:
        repo = self.repos[repo_id]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        if create_pr:
            ref = f"refs/pr/{len(repo.prs) + 1}"
            repo.prs.append(ref)
            repo.branches[ref] = dict(repo.branches["main"])
        if ref not in repo.branches:
            return 404, {"error": f"Invalid rev id: {ref}"}
        staged = dict(repo.branches[ref])
        for line in lines:
            key, value = line["key"], line.get("value", {})
            if key == "file":
                staged[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.blobs:
                    return 422, {"error": f"LFS object {value['oid']} of {value['path']} was never uploaded"}
                staged[value["path"]] = self.blobs[value["oid"]]
            elif key == "deletedFile":
                staged.pop(value["path"], None)
        too_large = [p for p, data in staged.items() if self.max_file_size and len(data) > self.max_file_size]
        if too_large:
            return 413, {"error": f"File {too_large[0]} is too large: the limit is {self.max_file_size} bytes"}
        oid = hashlib.sha1(f"{repo_id}{ref}{len(repo.commits)}".encode()).hexdigest()
        repo.branches[ref] = staged
        repo.heads[ref] = oid
        repo.commits.append({"ref": ref, "oid": oid, "summary": header.get("summary"), "files": sorted(staged)})
        body = {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}
        if create_pr:
            body["pullRequestUrl"] = f"{self.url}/{repo_id}/discussions/{len(repo.prs)}"
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # -- plumbing -----------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: dict | list | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        self.fake.authorizations.append(auth)
        return self.fake.tokens.get(auth.removeprefix("Bearer ").strip())

    def _route(self, method: str):
        path = urlsplit(self.path).path
        routes = [
            ("GET", r"/api/whoami-v2", "whoami"),
            ("POST", r"/api/repos/create", "create_repo"),
            ("POST", r"/api/validate-yaml", "validate_yaml"),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>.+)", "preupload"),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>.+)", "commit"),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>.+)", "branch"),
            ("GET", rf"/api/models/{REPO}/refs", "refs"),
            ("POST", rf"/api/models/{REPO}/discussions", "discussions"),
            ("GET", rf"/api/models/{REPO}/discussions/(?P<num>\d+)", "discussion"),
            ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>.+))?", "repo_info"),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
            ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
            ("POST", r"/_lfs/verify", "lfs_verify"),
            ("GET", r"/api/agent-harnesses", "agent_harnesses"),
        ]
        for verb, pattern, name in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return name, {k: unquote(v) if v else v for k, v in match.groupdict().items()}
        return None, {}

    def _handle(self, method: str) -> None:
        body = self._body()
        fake = self.fake
        fake.requests.append((method, self.path))
        name, params = self._route(method)
        if name is None:
            fake.unknown.append((method, self.path))
            return self._send(404, {"error": "Not found"})
        status = fake.failure_for(name)
        if status == 401:
            return self._send(
                401,
                {"error": "Invalid credentials in Authorization header"},
                {"X-Error-Message": "Invalid credentials in Authorization header"},
            )
        if status is not None:
            return self._send(status, {"error": f"Simulated error {status} on {name}"})
        user = self._user()
        if name not in ("lfs_upload", "lfs_verify", "agent_harnesses") and user is None:
            return self._send(
                401,
                {"error": "Invalid credentials in Authorization header"},
                {"X-Error-Message": "Invalid credentials in Authorization header"},
            )
        query = parse_qs(urlsplit(self.path).query)
        try:
            payload = json.loads(body) if body and name not in ("commit", "lfs_upload") else {}
        except ValueError:
            return self._send(400, {"error": "Malformed JSON"})
        with fake._lock:
            return getattr(self, f"_{name}")(user, params, payload, body, query)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # -- endpoints ----------------------------------------------------------------------------------------
    def _not_found(self, repo_id: str):
        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

    def _forbidden(self, user: str, repo_id: str):
        message = f"You don't have the rights to write to {repo_id}"
        return self._send(403, {"error": message}, {"X-Error-Message": message})

    def _agent_harnesses(self, user, params, payload, body, query):
        self._send(404, {"error": "Not found"})  # huggingface_hub asks for it on start-up and copes without

    def _whoami(self, user, params, payload, body, query):
        orgs = [{"name": org, "type": "org", "roleInOrg": "write"} for org in self.fake.orgs]
        self._send(
            200,
            {
                "type": "user",
                "name": user,
                "fullname": user.title(),
                "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": {"role": "write"}},
            },
        )

    def _create_repo(self, user, params, payload, body, query):
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        if not self.fake.can_write(user, repo_id):
            message = f'You don\'t have the rights to create a model under the namespace "{repo_id.split("/")[0]}"'
            return self._send(403, {"error": message}, {"X-Error-Message": message})
        if repo_id in self.fake.repos:
            return self._send(
                409, {"error": "You already created this model repo", "url": f"{self.fake.url}/{repo_id}"}
            )
        self.fake.repos[repo_id] = Repo(owner=repo_id.split("/")[0], private=payload.get("visibility") == "private")
        self._send(200, {"url": f"{self.fake.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _repo_info(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if not self.fake.can_read(user, repo_id):
            return self._not_found(repo_id)
        repo = self.fake.repos[repo_id]
        rev = params.get("rev") or "main"
        if rev not in repo.branches:
            return self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        siblings = [{"rfilename": path} for path in sorted(repo.branches[rev])]
        self._send(
            200,
            {
                "id": repo_id,
                "author": repo.owner,
                "private": repo.private,
                "sha": repo.heads[rev],
                "siblings": siblings,
                "tags": [],
            },
        )

    def _validate_yaml(self, user, params, payload, body, query):
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return self._send(400, {"errors": [{"message": f"Invalid YAML: {err}"}]})
        if metadata is not None and not isinstance(metadata, dict):
            return self._send(400, {"errors": [{"message": "Metadata must be a mapping"}]})
        self._send(200, {"errors": [], "warnings": []})

    def _refuse_write(self, user, repo_id) -> bool:
        """Answer 404 (can't see the repo) or 403 (can't write to it) and say so; False when writing is allowed."""
        if not self.fake.can_read(user, repo_id):
            self._not_found(repo_id)
            return True
        if not self.fake.can_write(user, repo_id):
            self._forbidden(user, repo_id)
            return True
        return False

    def _preupload(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if self._refuse_write(user, repo_id):
            return
        repo = self.fake.repos[repo_id]
        existing = repo.branches.get(params["rev"], {})
        files = []
        for item in payload.get("files", []):
            mode = self.fake.upload_mode(item["path"], item["size"])
            current = existing.get(item["path"])
            oid = None
            if current is not None:
                oid = hashlib.sha256(current).hexdigest() if mode == "lfs" else git_sha1(current)
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": files, "commitOid": repo.heads.get(params["rev"])})

    def _commit(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if self._refuse_write(user, repo_id):
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        status, answer = self.fake.commit(repo_id, params["rev"], lines, query.get("create_pr") == ["1"])
        self._send(status, answer)

    def _branch(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if self._refuse_write(user, repo_id):
            return
        repo = self.fake.repos[repo_id]
        if params["branch"] in repo.branches:
            return self._send(409, {"error": "Reference already exists"})
        start = payload.get("startingPoint") or "main"
        repo.branches[params["branch"]] = dict(repo.branches[start])
        repo.heads[params["branch"]] = repo.heads[start]
        self._send(200, {})

    def _refs(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if not self.fake.can_read(user, repo_id):
            return self._not_found(repo_id)
        repo = self.fake.repos[repo_id]
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": repo.heads[name]}
            for name in repo.branches
            if not name.startswith("refs/")
        ]
        self._send(200, {"branches": branches, "tags": [], "converts": []})

    def _discussions(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if not self.fake.can_read(user, repo_id):
            return self._not_found(repo_id)
        repo = self.fake.repos[repo_id]
        ref = f"refs/pr/{len(repo.prs) + 1}"
        repo.prs.append(ref)
        repo.branches[ref] = dict(repo.branches["main"])
        repo.heads[ref] = repo.heads["main"]
        self._send(200, {"num": len(repo.prs), "pullRequest": payload.get("pullRequest", False)})

    def _discussion(self, user, params, payload, body, query):
        repo_id, num = params["repo"], int(params["num"])
        self._send(
            200,
            {
                "title": "PR",
                "num": num,
                "author": {"name": user},
                "createdAt": "2026-01-01T00:00:00.000Z",
                "status": "draft",
                "repo": {"name": repo_id, "type": "model"},
                "isPullRequest": True,
                "events": [],
                "changes": {"base": "refs/heads/main"},
                "filesWithConflicts": [],
            },
        )

    def _lfs_batch(self, user, params, payload, body, query):
        repo_id = params["repo"]
        if not self.fake.can_write(user, repo_id):
            return self._forbidden(user, repo_id)
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            limit = self.fake.max_file_size
            if limit and obj["size"] > limit:
                entry["error"] = {"code": 422, "message": f"Object is too large: the limit is {limit} bytes"}
            elif obj["oid"] not in self.fake.blobs:
                entry["actions"] = {
                    "upload": {"href": f"{self.fake.url}/_lfs/{obj['oid']}"},
                    "verify": {"href": f"{self.fake.url}/_lfs/verify"},
                }
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, user, params, payload, body, query):
        if hashlib.sha256(body).hexdigest() != params["oid"]:
            return self._send(400, {"error": "Content does not match its sha256"})
        self.fake.blobs[params["oid"]] = body
        self._send(200, {})

    def _lfs_verify(self, user, params, payload, body, query):
        ok = payload.get("oid") in self.fake.blobs
        self._send(200 if ok else 404, {} if ok else {"error": "Object not found"})
