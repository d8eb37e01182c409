"""A small Hugging Face Hub-compatible HTTP server for tests (127.0.0.1 only, in memory).

The real Hub is out of reach in this project's CI, so the Hub tests run the *real*
``huggingface_hub`` client (``HfApi``, ``hf_hub_download``, ``from_pretrained``) against this
server, pointed at it through ``HF_ENDPOINT`` or ``HfApi(endpoint=...)``.

It implements just the endpoints that client sends for publishing and loading:

- ``POST /api/repos/create``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``;
- ``GET /api/{models,datasets}/{repo_id}[/revision/{rev}]`` (repo info with siblings) and
  ``GET /api/{type}s/{repo_id}/tree/{rev}[/{path}]``;
- the commit API used by ``upload_folder`` / ``create_commit``: ``POST .../preupload/{rev}``
  then ``POST .../commit/{rev}`` (ndjson). Preupload answers ``uploadMode: "regular"`` for
  every file, so contents travel inline as base64 in the commit. That is the server's choice
  on the real Hub too; answering ``"lfs"`` would send the client (huggingface_hub 2.4 with
  hf_xet installed) to the Xet storage protocol, which is out of scope here;
- ``HEAD``/``GET /{repo_id}/resolve/{rev}/{path}`` (``/datasets/...`` for datasets) with the
  headers ``hf_hub_download`` relies on: ``ETag`` (git blob sha1), ``X-Repo-Commit``,
  ``Content-Length``, and byte ranges for resumed downloads.

Auth: ``tokens`` maps a bearer token to a user name, ``orgs`` maps an organisation to its
members. A user may write to its own namespace and its organisations' ones; anything else is
403; no or unknown token on a write is 401. Errors carry ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) like the Hub, so the client raises its typed errors.

Run standalone: ``python tests/_local_hub.py --port 8765 --token hf_local=alice --org org=alice``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_REPO = r"(?P<repo>[\w.\-]+(?:/[\w.\-]+)?)"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's ETag / oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Commit:
    oid: str
    message: str
    files: dict[str, bytes]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[_Commit] = field(default_factory=list)
    sdk: str | None = None  # a Space's SDK (gradio, docker, static)

    @property
    def head(self) -> _Commit:
        return self.commits[-1]

    def at(self, revision: str) -> _Commit | None:
        if revision == "main":
            return self.head
        return next((c for c in self.commits if c.oid == revision), None)


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LocalHub:
    """An in-memory Hub on ``127.0.0.1``; use as a context manager or call start()/stop().

    ``hub.url`` is the endpoint; ``hub.requests`` logs ``(method, path, status)``;
    ``hub.files(repo_id)`` returns the files of a repo's head commit.
    """

    def __init__(
        self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None, port: int = 0
    ):
        self.tokens = dict(tokens or {})
        self.orgs = {name: set(members) for name, members in (orgs or {}).items()}
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalHub:  # noqa: PYI034 (Python 3.10 has no typing.Self)
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the local hub")
        return dict(repo.head.files)

    # -- helpers used by the handler -------------------------------------------------------------

    def user_for(self, headers) -> str | None:
        auth = headers.get("Authorization", "")
        return self.tokens.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None

    def can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or user in self.orgs.get(namespace, ()))

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.can_write(user, repo_id.split("/")[0])):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def commit(self, repo: _Repo, message: str, files: dict[str, bytes]) -> _Commit:
        parent = repo.commits[-1].oid if repo.commits else ""
        digest = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{git_blob_sha1(files[path])}\n".encode())
        commit = _Commit(digest.hexdigest(), message, files)
        repo.commits.append(commit)
        return commit


def _handler_for(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def log_message(self, *args) -> None:  # quiet: requests are kept in hub.requests instead
            pass

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_POST(self):
            self._dispatch("POST")

        # -- plumbing ----------------------------------------------------------------------------

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict | None = None,
            content_type: str = "application/json",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            hub.requests.append((self.command, self.path, status))

        def _json(self, status: int, payload, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers=headers)

        def _dispatch(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            body = self._body() if method == "POST" else b""
            try:
                with hub._lock:
                    self._route(method, path, body)
            except _HubError as error:
                headers = {"X-Error-Message": error.message}
                if error.code:
                    headers["X-Error-Code"] = error.code
                self._json(error.status, {"error": error.message}, headers=headers)

        # -- routes ------------------------------------------------------------------------------

        def _route(self, method: str, path: str, body: bytes) -> None:
            user = hub.user_for(self.headers)
            if method == "GET" and path == "/api/whoami-v2":
                if user is None:
                    raise _HubError(401, "Invalid credentials in Authorization header")
                orgs = [{"name": o, "type": "org"} for o, members in hub.orgs.items() if user in members]
                return self._json(
                    200,
                    {"type": "user", "name": user, "orgs": orgs, "auth": {"accessToken": {"role": "write"}}},
                )
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml(body)
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(user, json.loads(body or b"{}"))
            m = re.fullmatch(
                rf"/api/(?P<type>models|datasets|spaces)/{_REPO}/(?P<op>preupload|commit)/(?P<rev>[^/]+)",
                path,
            )
            if m and method == "POST":
                repo = hub.repo(_TYPES[m["type"]], m["repo"], user)
                if not hub.can_write(user, m["repo"].split("/")[0]):
                    raise _HubError(
                        401 if user is None else 403, "You don't have the rights to write to this repository"
                    )
                if m["rev"] != "main":
                    raise _HubError(404, f"Invalid rev id: {m['rev']}", "RevisionNotFound")
                return self._preupload(repo, body) if m["op"] == "preupload" else self._commit(repo, body)
            m = re.fullmatch(
                rf"/api/(?P<type>models|datasets|spaces)/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", path
            )
            if m and method == "GET":
                commit = self._revision(hub.repo(_TYPES[m["type"]], m["repo"], user), m["rev"])
                prefix = (m["sub"] or "").strip("/")
                entries = [
                    {"type": "file", "path": p, "size": len(d), "oid": git_blob_sha1(d)}
                    for p, d in sorted(commit.files.items())
                    if not prefix or p.startswith(prefix + "/")
                ]
                return self._json(200, entries)
            m = re.fullmatch(
                rf"/api/(?P<type>models|datasets|spaces)/{_REPO}(?:/revision/(?P<rev>[^/]+))?", path
            )
            if m and method == "GET":
                repo = hub.repo(_TYPES[m["type"]], m["repo"], user)
                return self._info(repo, self._revision(repo, m["rev"] or "main"))
            m = re.fullmatch(
                rf"/(?:(?P<type>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path
            )
            if m and method in ("GET", "HEAD"):
                repo = hub.repo(_TYPES[m["type"] or "models"], m["repo"], user)
                return self._resolve(repo, self._revision(repo, m["rev"]), m["file"], method)
            raise _HubError(404, f"{method} {path} is not served by the local hub")

        def _revision(self, repo: _Repo, revision: str) -> _Commit:
            commit = repo.at(revision)
            if commit is None:
                raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return commit

        def _validate_yaml(self, body: bytes) -> None:
            content = json.loads(body).get("content", "")
            m = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
            try:
                if m:
                    yaml.safe_load(m.group(1))
            except yaml.YAMLError as error:
                return self._json(400, {"errors": [{"message": str(error)}]})
            return self._json(200, {"errors": [], "warnings": []})

        def _create_repo(self, user: str | None, payload: dict) -> None:
            repo_type = payload.get("type") or "model"
            namespace = payload.get("organization") or user
            if user is None:
                raise _HubError(401, "You must be authenticated to create a repo")
            repo_id = f"{namespace}/{payload['name']}"
            if not hub.can_write(user, namespace):
                raise _HubError(
                    403,
                    f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}",
                )
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            if repo_type == "space" and not payload.get("sdk"):
                raise _HubError(400, "A Space needs an SDK (sdk: gradio, docker or static)")
            if (repo_type, repo_id) in hub.repos:
                raise _HubError(409, f"You already created this {repo_type} repo")
            repo = _Repo(
                repo_type,
                repo_id,
                private=payload.get("visibility") == "private" or bool(payload.get("private")),
                sdk=payload.get("sdk"),
            )
            hub.commit(
                repo,
                "initial commit",
                {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
            )
            hub.repos[(repo_type, repo_id)] = repo
            return self._json(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id})

        def _preupload(self, repo: _Repo, body: bytes) -> None:
            files = json.loads(body)["files"]
            current = repo.head.files
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(current[f["path"]]) if f["path"] in current else None,
                }
                for f in files
            ]
            return self._json(200, {"files": answer, "commitOid": repo.head.oid})

        def _commit(self, repo: _Repo, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((item["value"] for item in lines if item["key"] == "header"), None)
            if header is None:
                raise _HubError(400, "the commit payload has no header line")
            files = dict(repo.head.files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                elif key != "header":  # lfsFile / copies never happen: preupload answers "regular"
                    raise _HubError(400, f"the local hub does not support commit operation {key!r}")
            parent = header.get("parentCommit")
            if parent and parent != repo.head.oid:
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            commit = hub.commit(repo, header.get("summary", ""), files)
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            return self._json(
                200,
                {
                    "success": True,
                    "commitOid": commit.oid,
                    "commitUrl": f"{hub.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                },
            )

        def _info(self, repo: _Repo, commit: _Commit) -> None:
            return self._json(
                200,
                {
                    "id": repo.repo_id,
                    "_id": repo.repo_id,
                    "sha": commit.oid,
                    "private": repo.private,
                    "disabled": False,
                    "gated": False,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                    "lastModified": "2025-01-01T00:00:00.000Z",
                    "createdAt": "2025-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": path} for path in sorted(commit.files)],
                },
            )

        def _resolve(self, repo: _Repo, commit: _Commit, filename: str, method: str) -> None:
            data = commit.files.get(filename)
            if data is None:
                raise _HubError(404, "Entry not found", "EntryNotFound")
            headers = {
                "ETag": f'"{git_blob_sha1(data)}"',
                "X-Repo-Commit": commit.oid,
                "Accept-Ranges": "bytes",
            }
            status = 200
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged and method == "GET":
                start = int(ranged[1])
                end = int(ranged[2]) if ranged[2] else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            self._send(status, data, headers=headers, content_type="application/octet-stream")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", action="append", default=[], help="TOKEN=USER (repeatable)")
    parser.add_argument("--org", action="append", default=[], help="ORG=USER[,USER...] (repeatable)")
    args = parser.parse_args()
    tokens = dict(item.split("=", 1) for item in args.token)
    orgs = {org: members.split(",") for org, members in (item.split("=", 1) for item in args.org)}
    hub = LocalHub(tokens, orgs, port=args.port)
    print(f"local hub on {hub.url}", flush=True)
    hub._server.serve_forever()


if __name__ == "__main__":
    main()
