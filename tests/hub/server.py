"""A local Hugging Face Hub on loopback, speaking the HTTP API the real ``huggingface_hub``
client calls (checked against the ``hf_api``, ``file_download``, ``_snapshot_download``,
``_commit_api`` and ``lfs`` modules of huggingface_hub 2.4, 1.33 and 0.36; uploads over Git LFS,
as a client without ``hf_xet`` sends them):

- ``GET /api/models``: listing with ``search``, ``filter`` (tags, library and pipeline tag),
  ``pipeline_tag``, ``author``, ``sort``, ``limit``, ``expand``; pages through ``Link`` headers;
- ``GET /api/{models,datasets}/OWNER/NAME[/revision/REV]``: repo info with ``siblings``;
- ``GET /api/{models,datasets}/OWNER/NAME/tree/REV[/PATH]``: the file listing (``recursive``),
  which ``snapshot_download`` reads from huggingface_hub 1.0 on;
- ``HEAD``/``GET`` ``[/datasets]/OWNER/NAME/resolve/REV/PATH``: file download with ``ETag``,
  ``X-Repo-Commit``, ``X-Linked-Etag`` and ``X-Linked-Size``; never any ``X-Xet-*`` header,
  so the client never switches to the xet protocol;
- ``POST /api/repos/create``, ``POST /api/validate-yaml``;
- ``POST /api/{models,datasets}/OWNER/NAME/preupload/REV``: ``lfs`` for binary files and the
  patterns of the Hub's default ``.gitattributes``, ``regular`` otherwise, with the current oid;
- ``POST [/datasets]/OWNER/NAME.git/info/lfs/objects/batch``: always answers the ``basic``
  transfer (even when the client offers ``xet``), then ``PUT`` upload and ``POST`` verify;
- ``POST /api/{models,datasets}/OWNER/NAME/commit/REV``: the NDJSON commit.

State (repos, commits, blobs) lives in a folder; every request is recorded in
:attr:`LocalHub.requests`. Faults (an error status N times, a garbage answer, a hang, an
answer trickled byte by byte, a stop after the response) are injected per method and path
pattern.
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
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

LFS_PATTERNS = (".parquet", ".onnx", ".safetensors", ".bin", ".h5", ".pt", ".pth", ".npy", ".arrow", ".zip",
                ".gz", ".tar", ".pkl", ".msgpack")
GITATTRIBUTES = "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_PATTERNS)
EPOCH = "2026-01-01T00:00:00.000Z"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    """Answer ``status`` (with ``headers``), answer ``body`` (raw bytes, HTTP 200), hang until the
    server stops, send the answer one byte every ``trickle`` seconds, or stop the server after
    answering, for the next ``times`` requests matching ``method`` and ``path`` (regex) and, when
    given, having the query parameter ``query``."""

    method: str
    path: str
    status: int | None = None
    times: int = 1
    hang: bool = False
    stop: bool = False
    trickle: float | None = None
    body: bytes | None = None
    query: str | None = None
    headers: dict = field(default_factory=dict)

    def matches(self, method: str, path: str, query: dict) -> bool:
        return (self.times > 0 and method == self.method and re.fullmatch(self.path, path) is not None
                and (self.query is None or self.query in query))


class LocalHub:
    """The server: ``start()`` returns its URL (``http://127.0.0.1:PORT``); ``stop()`` ends it."""

    def __init__(self, root: Path, *, page_size: int = 2):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.page_size = page_size
        self.tokens: dict[str, str] = {}  # token -> user
        self.requests: list[dict] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self.url = ""
        self._clock = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.stopping.set()
        if self.httpd is not None:
            httpd, self.httpd = self.httpd, None
            httpd.shutdown()
            httpd.server_close()

    # -- test helpers ------------------------------------------------------------------
    def add_token(self, token: str, user: str) -> None:
        self.tokens[token] = user

    def add_fault(self, method: str, path: str, **kwargs) -> Fault:
        fault = Fault(method, path, **kwargs)
        self.faults.append(fault)
        return fault

    def set_meta(self, repo_id: str, repo_type: str = "model", **meta) -> None:
        """Set listing metadata (``downloads``, ``likes``, ``gated`` = "auto"/"manual"/False,
        ``access`` = users granted a gated repo, ``createdAt`` ...)."""
        with self.lock:
            state = self._load(repo_type, repo_id)
            state["meta"].update(meta)
            self._save(repo_type, repo_id, state)

    def head(self, repo_id: str, repo_type: str = "model") -> str:
        return self._load(repo_type, repo_id)["branches"]["main"]

    def commits(self, repo_id: str, repo_type: str = "model") -> int:
        return len(self._load(repo_type, repo_id)["commits"])

    def requests_to(self, method: str, pattern: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and re.search(pattern, r["path"])]

    # -- storage -----------------------------------------------------------------------
    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id.replace('/', '--')}.json"

    def _exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_file(repo_type, repo_id).is_file()

    def _load(self, repo_type: str, repo_id: str) -> dict:
        return json.loads(self._repo_file(repo_type, repo_id).read_text())

    def _save(self, repo_type: str, repo_id: str, state: dict) -> None:
        path = self._repo_file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)

    def _blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _store(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blob(digest).write_bytes(data)
        return digest

    def _now(self) -> str:
        self._clock += 1
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1767225600 + self._clock)) + ".000Z"

    def _create(self, repo_type: str, repo_id: str, owner: str, private: bool) -> dict:
        data = GITATTRIBUTES.encode()
        files = {".gitattributes": {"sha256": self._store(data), "size": len(data), "oid": git_oid(data),
                                    "lfs": False}}
        state = {"id": repo_id, "owner": owner, "type": repo_type, "branches": {}, "commits": {},
                 "meta": {"private": private, "gated": False, "access": [], "downloads": 0, "likes": 0,
                          "createdAt": self._now()}}
        self._commit(state, files, "initial commit", parent=None)
        return state

    def _commit(self, state: dict, files: dict, summary: str, parent: str | None) -> str:
        date = self._now()
        body = json.dumps({"repo": state["id"], "parent": parent, "files": files, "summary": summary, "date": date},
                          sort_keys=True)
        sha = hashlib.sha1(body.encode()).hexdigest()
        state["commits"][sha] = {"parent": parent, "files": files, "summary": summary, "date": date}
        state["branches"]["main"] = sha
        card = files.get("README.md")
        if card:
            state["card"] = _front_matter(self._blob(card["sha256"]).read_text(encoding="utf-8"))
        return sha


def _front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        return {}
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else {}


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # -- plumbing ----------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload=None, *, headers: dict | None = None, raw: bytes | None = None,
              head: bool = False) -> None:
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.send_response(status)
        headers = dict(headers or {})
        self.send_header("Content-Type", headers.pop("Content-Type", None)
                         or ("application/octet-stream" if raw is not None else "application/json"))
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _trickle(self, body: bytes, seconds: float) -> None:
        """The whole answer, status line first, one byte every ``seconds`` (until the server stops)."""
        answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        self.close_connection = True
        for i in range(len(answer)):
            if self.hub.stopping.wait(seconds):
                return
            try:
                self.wfile.write(answer[i:i + 1])
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def _error(self, err: HubError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, {"error": err.message, **err.extra}, headers=headers, head=self.command == "HEAD")

    def _handle(self) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        body = self._body()
        record = {"method": self.command, "path": path, "query": query, "headers": dict(self.headers),
                  "raw_path": split.path}
        kind = self.headers.get("Content-Type", "")
        if body and "ndjson" in kind:
            record["ndjson"] = [json.loads(line) for line in body.splitlines() if line.strip()]
        elif body and "json" in kind:
            record["json"] = json.loads(body)
        with hub.lock:
            hub.requests.append(record)
            fault = next((f for f in hub.faults if f.matches(self.command, path, query)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None and fault.hang:
            hub.stopping.wait(60)
            self.close_connection = True
            return
        if fault is not None and fault.status:
            return self._error(HubError(fault.status, f"injected {fault.status}", headers=fault.headers))
        if fault is not None and fault.body is not None:
            return self._send(200, raw=fault.body, headers={"Content-Type": "application/json"})
        if fault is not None and fault.trickle:
            return self._trickle(b"[]", fault.trickle)
        if fault is not None and fault.stop:
            hub.stop()  # the listening socket closes before the answer goes out
            self.close_connection = True
        try:
            user = self._user()
            with hub.lock:
                status, payload, headers, raw = self._route(split.path, path, query, body, user)
        except HubError as err:
            return self._error(err)
        if fault is not None and fault.stop:
            headers = {**headers, "Connection": "close"}
        self._send(status, payload, headers=headers, raw=raw, head=self.command == "HEAD")

    do_GET = do_HEAD = do_POST = do_PUT = _handle

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.tokens[token]

    # -- routing -----------------------------------------------------------------------
    def _route(self, raw_path: str, path: str, query: dict, body: bytes, user: str | None):
        m = self.command
        repo = r"(?P<repo>[^/]+/[^/]+)"
        routes = [
            ("GET", r"/api/models", self._list),
            ("GET", rf"/api/(?P<kind>models|datasets)/{repo}(?:/revision/(?P<rev>[^/]+))?", self._info),
            ("GET", rf"/api/(?P<kind>models|datasets)/{repo}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.*))?", self._tree),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", rf"/api/(?P<kind>models|datasets)/{repo}/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", rf"/api/(?P<kind>models|datasets)/{repo}/commit/(?P<rev>[^/]+)", self._commit),
            ("POST", rf"/(?P<prefix>datasets/)?{repo}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self._lfs_put),
            ("POST", r"/lfs-verify", self._lfs_verify),
            ("HEAD", rf"/(?P<prefix>datasets/)?{repo}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._resolve),
            ("GET", rf"/(?P<prefix>datasets/)?{repo}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._resolve),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if method == m and match:
                return handler(user=user, query=query, body=body, **match.groupdict())
        raise HubError(404, f"no route for {m} {path}")

    # -- helpers -----------------------------------------------------------------------
    def _state(self, kind: str, repo: str, user: str | None, *, write: bool = False) -> dict:
        repo_type = "dataset" if kind.startswith("dataset") else "model"
        hub = self.hub
        if not hub._exists(repo_type, repo):
            raise HubError(404, "Repository not found", "RepoNotFound")
        state = hub._load(repo_type, repo)
        meta = state["meta"]
        if write:
            if user is None:
                raise HubError(401, "You must be authenticated to write", "RepoNotFound")
            if user != state["owner"]:
                raise HubError(403, f"You don't have the rights to write to {repo}")
        elif meta.get("private") and user != state["owner"]:
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return state

    def _check_gated(self, state: dict, user: str | None) -> None:
        meta = state["meta"]
        if meta.get("gated") and user != state["owner"] and user not in meta.get("access", []):
            raise HubError(401 if user is None else 403,
                           f"Access to model {state['id']} is restricted and you are not in the authorized list.",
                           "GatedRepo")

    @staticmethod
    def _resolve_rev(state: dict, rev: str) -> str:
        rev = unquote(rev)
        if rev in state["branches"]:
            return state["branches"][rev]
        if rev in state["commits"]:
            return rev
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _model_fields(self, state: dict, sha: str | None = None) -> dict:
        meta, card = state["meta"], state.get("card", {})
        sha = sha or state["branches"]["main"]
        tags = list(card.get("tags") or [])
        for extra in (card.get("library_name"), f"license:{card['license']}" if card.get("license") else None):
            if extra and extra not in tags:
                tags.append(extra)
        return {"_id": hashlib.md5(state["id"].encode()).hexdigest()[:24], "id": state["id"], "modelId": state["id"],
                "author": state["owner"], "sha": sha, "lastModified": state["commits"][state["branches"]["main"]]["date"],
                "createdAt": meta["createdAt"], "private": bool(meta.get("private")), "gated": meta.get("gated") or False,
                "disabled": False, "downloads": meta.get("downloads", 0), "likes": meta.get("likes", 0),
                "trendingScore": meta.get("likes", 0), "tags": tags, "pipeline_tag": card.get("pipeline_tag"),
                "library_name": card.get("library_name"), "cardData": card or None,
                "siblings": [{"rfilename": p} for p in sorted(state["commits"][sha]["files"])]}

    # -- handlers ----------------------------------------------------------------------
    def _list(self, *, user, query, body):
        hub = self.hub
        folder = hub.root / "repos" / "model"
        states = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        rows = []
        search = [s.lower() for s in query.get("search", [])]
        wanted = query.get("filter", [])
        for state in states:
            if state["meta"].get("private") and user != state["owner"]:
                continue
            row = self._model_fields(state)
            labels = set(row["tags"]) | {row["pipeline_tag"], row["library_name"]}
            if any(s not in row["id"].lower() for s in search) or not all(f in labels for f in wanted):
                continue
            if query.get("pipeline_tag") and row["pipeline_tag"] != query["pipeline_tag"][0]:
                continue
            if query.get("author") and row["author"] != query["author"][0]:
                continue
            rows.append(row)
        sort = query.get("sort", [None])[0]
        if sort:
            rows.sort(key=lambda r: (r.get(sort) or 0, r["id"]) if sort not in ("lastModified", "createdAt")
                      else (r.get(sort) or "", r["id"]), reverse=True)
        limit = int(query["limit"][0]) if "limit" in query else len(rows)
        rows = rows[:limit]
        offset = int(query.get("cursor", ["0"])[0])
        page = rows[offset:offset + hub.page_size]
        expand = query.get("expand")
        full = "full" in query
        keep = {"_id", "id", *(expand or [])} if expand else (
            None if full else {"_id", "id", "modelId", "likes", "trendingScore", "private", "downloads", "tags",
                               "pipeline_tag", "library_name", "createdAt"})
        page = [{k: v for k, v in r.items() if keep is None or k in keep} for r in page]
        headers = {}
        if offset + hub.page_size < len(rows):
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = [str(offset + hub.page_size)]
            headers["Link"] = f'<{hub.url}/api/models?{urlencode(params, doseq=True)}>; rel="next"'
        return 200, page, headers, None

    def _info(self, *, user, query, body, kind, repo, rev=None):
        state = self._state(kind, repo, user)
        sha = self._resolve_rev(state, rev or "main")
        info = self._model_fields(state, sha)
        if kind == "datasets":
            info = {k: info[k] for k in ("_id", "id", "author", "sha", "lastModified", "createdAt", "private",
                                         "gated", "disabled", "downloads", "likes", "tags", "cardData", "siblings")}
        return 200, info, {}, None

    def _tree(self, *, user, query, body, kind, repo, rev, folder=None):
        """The files (and folders) under ``folder`` at ``rev``; all levels with ``recursive=true``."""
        state = self._state(kind, repo, user)
        files = state["commits"][self._resolve_rev(state, rev)]["files"]
        prefix = f"{folder.strip('/')}/" if folder and folder.strip("/") else ""
        recursive = query.get("recursive", ["false"])[0] == "true"
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) > 1 and not recursive:
                continue
            entry = files[path]
            row = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
            if entry["lfs"]:
                row["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
            entries.append(row)
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in sorted(folders)]
        return 200, entries, {}, None

    def _create_repo(self, *, user, query, body):
        payload = json.loads(body)
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        owner = payload.get("organization") or user
        if owner != user:
            raise HubError(403, f"You don't have the rights to create a repo under {owner}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{owner}/{payload['name']}"
        private = bool(payload.get("private")) or payload.get("visibility") == "private"  # 0.x; 1.0 on
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        if self.hub._exists(repo_type, repo_id):
            raise HubError(409, f"You already created this {repo_type} repo",
                           extra={"url": f"{self.hub.url}/{prefix}{repo_id}"})
        self.hub._save(repo_type, repo_id, self.hub._create(repo_type, repo_id, owner, private))
        return 200, {"url": f"{self.hub.url}/{prefix}{repo_id}", "name": repo_id}, {}, None

    def _validate_yaml(self, *, user, query, body):
        content = json.loads(body)["content"]
        try:
            _front_matter(content)
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": str(exc)}], "warnings": []}, {}, None
        return 200, {"errors": [], "warnings": []}, {}, None

    def _preupload(self, *, user, query, body, kind, repo, rev):
        state = self._state(kind, repo, user, write=True)
        files = state["commits"][self._resolve_rev(state, rev)]["files"]
        answer = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].endswith(LFS_PATTERNS) or b"\0" in sample or item["size"] > 10 * 2**20
            entry = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            current = files.get(item["path"])
            if current is not None:
                entry["oid"] = current["sha256"] if current["lfs"] else current["oid"]
            answer.append(entry)
        return 200, {"files": answer, "commitOid": state["branches"]["main"]}, {}, None

    def _lfs_batch(self, *, user, query, body, repo, prefix=None):
        self._state("datasets" if prefix else "models", repo, user, write=True)
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub._blob(obj["oid"]).is_file():
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"},
                                    "verify": {"href": f"{self.hub.url}/lfs-verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}, None

    def _lfs_put(self, *, user, query, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded content does not match the oid")
        self.hub._store(body)
        return 200, {}, {}, None

    def _lfs_verify(self, *, user, query, body):
        payload = json.loads(body)
        blob = self.hub._blob(payload["oid"])
        if not blob.is_file() or blob.stat().st_size != payload["size"]:
            raise HubError(404, "object not found")
        return 200, {}, {}, None

    def _commit(self, *, user, query, body, kind, repo, rev):
        state = self._state(kind, repo, user, write=True)
        repo_type = "dataset" if kind == "datasets" else "model"
        head = self._resolve_rev(state, rev)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubError(412, "parent commit is not the head of the branch")
        files = dict(state["commits"][head]["files"])
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                data = base64.b64decode(value["content"])
                files[value["path"]] = {"sha256": self.hub._store(data), "size": len(data), "oid": git_oid(data),
                                        "lfs": False}
            elif line["key"] == "lfsFile":
                if not self.hub._blob(value["oid"]).is_file():
                    raise HubError(422, f"LFS object {value['oid']} was not uploaded")
                files[value["path"]] = {"sha256": value["oid"], "size": value["size"], "oid": value["oid"],
                                        "lfs": True}
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HubError(400, f"unsupported commit operation {line['key']!r}")
        sha = self.hub._commit(state, files, header["summary"], parent=head)
        self.hub._save(repo_type, repo, state)
        prefix = "" if repo_type == "model" else "datasets/"
        return 200, {"commitUrl": f"{self.hub.url}/{prefix}{repo}/commit/{sha}", "commitOid": sha, "success": True,
                     "pullRequestUrl": None}, {}, None

    def _resolve(self, *, user, query, body, repo, rev, file, prefix=None):
        state = self._state("datasets" if prefix else "models", repo, user)
        self._check_gated(state, user)
        sha = self._resolve_rev(state, rev)
        entry = state["commits"][sha]["files"].get(file)
        if entry is None:
            raise HubError(404, f"Entry not found: {file}", "EntryNotFound",
                           headers={"X-Repo-Commit": sha})
        data = self.hub._blob(entry["sha256"]).read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Content-Length": str(len(data)),
                   "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        return 200, None, headers, data
