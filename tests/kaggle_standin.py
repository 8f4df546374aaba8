"""A small stand-in for the Kaggle API, so the real ``kaggle`` CLI can be tested offline.

How the real client is pointed here (kaggle 2.2.4 / kagglesdk 0.1.x): the CLI builds its
client with an explicit environment, so ``KAGGLE_API_ENVIRONMENT=TEST`` (localhost:7777) is
ignored by the CLI; ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` sends every call to
``http://localhost/api/v1/<Service>/<Method>`` (port 80). Setting ``HTTP_PROXY`` to this
server makes requests deliver those calls here on any free loopback port — the server
accepts both absolute-form (proxy) and origin-form request lines. See :meth:`StandIn.env`.

Implemented calls (JSON in, JSON out, shapes from kagglesdk's ``*_api_service.py`` types):

* ``kernels.KernelsApiService``: SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput
* ``datasets.DatasetApiService``: GetDatasetStatus, GetDataset, CreateDataset, CreateDatasetVersion
* ``blobs.BlobApiService``: StartBlobUpload (+ ``PUT /upload/<token>``)
* ``competitions.CompetitionApiService``: DownloadDataFiles (302 to ``GET /download/...``),
  StartSubmissionUpload, CreateSubmission, ListSubmissions, GetSubmissionLimits

Everything received is recorded in ``calls`` (service, method, JSON body) and ``blobs``
(uploaded bytes by token). Tests script behaviour through ``kernel_status``,
``kernel_outputs``, ``competition_zips``, ``reject_submission`` and ``scores``. Errors use
Kaggle's JSON error shape ``{"code": N, "message": ...}`` that kagglesdk turns into an
``HTTPError`` carrying the message. Loopback only; every request has a socket timeout.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class StandIn:
    """State of the fake service; ``start()`` binds 127.0.0.1 on a free port."""

    user: str = "testuser"
    competitions: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    blob_names: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, list[dict]] = field(default_factory=dict)  # "owner/slug" -> SaveKernel bodies (one per version)
    kernel_status: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # ref -> [(status, failure)], popped per poll
    kernel_outputs: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref -> {relative file name: bytes}
    kernel_logs: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, list[dict]] = field(default_factory=dict)  # ref -> versions [{"files": {name: bytes}, "request": body}]
    competition_zips: dict[str, bytes] = field(default_factory=dict)
    submissions: dict[str, list[dict]] = field(default_factory=dict)  # slug -> ApiSubmission dicts (newest first)
    reject_submission: str = ""  # non-empty: CreateSubmission answers 400 with this message
    scores: dict[str, tuple[str, str]] = field(default_factory=dict)  # description -> (public, private)
    submission_tokens: dict[int, str] = field(default_factory=dict)  # submission ref -> blob token
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "StandIn":
        state = self

        class Handler(_Handler):
            standin = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, home: str) -> dict[str, str]:
        """Environment for a ``kaggle`` subprocess that talks to this server with throw-away credentials."""
        return {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": self.base, "http_proxy": self.base,
                "NO_PROXY": "", "no_proxy": "", "HOME": home, "KAGGLE_CONFIG_DIR": f"{home}/.kaggle",
                "KAGGLE_USERNAME": self.user, "KAGGLE_KEY": "standin-key", "TMPDIR": home}

    def received(self, method: str) -> list[dict]:
        return [body for _, m, body in self.calls if m == method]

    # ------------------------------------------------------------------ API methods

    def dispatch(self, service: str, method: str, body: dict) -> dict:
        with self._lock:
            self.calls.append((service, method, body))
        fn: Callable[[dict], dict] | None = getattr(self, f"api_{method}", None)
        if fn is None:
            raise ApiError(404, f"stand-in: {service}/{method} is not implemented")
        return fn(body)

    def _new_blob(self, name: str) -> dict:
        token = f"blob{len(self.blob_names) + 1:04d}"
        self.blob_names[token] = name
        return {"token": token, "createUrl": f"{self.base}/upload/{token}"}

    def api_StartBlobUpload(self, b: dict) -> dict:
        return self._new_blob(b.get("name", ""))

    def api_StartSubmissionUpload(self, b: dict) -> dict:
        if b.get("competitionName") not in self.competitions:
            raise ApiError(404, f"Competition {b.get('competitionName')!r} not found")
        return self._new_blob(b.get("fileName", ""))

    def api_SaveKernel(self, b: dict) -> dict:
        slug = b.get("slug") or ""
        if "/" not in slug or not b.get("text"):
            raise ApiError(400, "slug owner/name and text are required")
        versions = self.kernels.setdefault(slug, [])
        versions.append(b)
        bad_ds = [d for d in b.get("datasetDataSources", []) if d not in self.datasets]
        bad_comp = [c for c in b.get("competitionDataSources", []) if c not in self.competitions]
        return {"ref": f"/code/{slug}", "url": f"{self.base}/code/{slug}", "versionNumber": len(versions),
                "kernelId": 1000 + list(self.kernels).index(slug), "invalidDatasetSources": bad_ds,
                "invalidCompetitionSources": bad_comp}

    def _kernel(self, b: dict) -> str:
        ref = f"{b.get('userName')}/{b.get('kernelSlug')}"
        if ref not in self.kernels:
            raise ApiError(404, f"Kernel {ref} not found")
        return ref

    def api_GetKernelSessionStatus(self, b: dict) -> dict:
        ref = self._kernel(b)
        script = self.kernel_status.get(ref) or [("COMPLETE", "")]
        status, failure = script.pop(0) if len(script) > 1 else script[0]
        return {"status": status, **({"failureMessage": failure} if failure else {})}

    def api_ListKernelSessionOutput(self, b: dict) -> dict:
        ref = self._kernel(b)
        files = []
        for name, data in self.kernel_outputs.get(ref, {}).items():
            token = f"out{len(self.blobs) + 1:04d}"
            self.blobs[token] = data
            files.append({"url": f"{self.base}/download/{token}/{name.rsplit('/', 1)[-1]}", "fileName": name})
        return {"files": files, "log": self.kernel_logs.get(ref, "")}

    def _dataset(self, b: dict, slug_key: str = "datasetSlug") -> str:
        ref = f"{b.get('ownerSlug')}/{b.get(slug_key)}"
        if ref not in self.datasets:
            raise ApiError(404, f"Dataset {ref} not found")
        return ref

    def api_GetDatasetStatus(self, b: dict) -> dict:
        self._dataset(b)
        return {"status": "READY"}

    def api_GetDataset(self, b: dict) -> dict:
        ref = self._dataset(b)
        return {"ref": ref, "currentVersionNumber": len(self.datasets[ref])}

    def _files(self, files: list[dict]) -> dict[str, bytes]:
        out = {}
        for f in files:
            token = f.get("token", "")
            if token not in self.blobs:
                raise ApiError(400, f"blob token {token!r} was never uploaded")
            out[self.blob_names[token]] = self.blobs[token]
        return out

    def api_CreateDataset(self, b: dict) -> dict:
        ref = f"{b.get('ownerSlug')}/{b.get('slug')}"
        if ref in self.datasets:
            return {"status": "error", "error": f"dataset {ref} already exists"}
        self.datasets[ref] = [{"files": self._files(b.get("files", [])), "request": b}]
        return {"ref": ref, "url": f"{self.base}/datasets/{ref}", "status": "ok"}

    def api_CreateDatasetVersion(self, b: dict) -> dict:
        ref = self._dataset(b)
        body = b.get("body", {})
        self.datasets[ref].append({"files": self._files(body.get("files", [])), "request": b})
        return {"ref": ref, "url": f"{self.base}/datasets/{ref}", "status": "ok"}

    def api_DownloadDataFiles(self, b: dict) -> dict:
        slug = b.get("competitionName", "")
        if slug not in self.competition_zips:
            raise ApiError(404, f"Competition {slug!r} not found or rules not accepted")
        token = f"comp-{slug}"
        self.blobs[token] = self.competition_zips[slug]
        raise _Redirect(f"{self.base}/download/{token}/{slug}.zip")

    def api_CreateSubmission(self, b: dict) -> dict:
        slug = b.get("competitionName", "")
        if self.reject_submission:
            raise ApiError(400, self.reject_submission)
        token = b.get("blobFileTokens", "")
        if token not in self.blobs:
            raise ApiError(400, f"submission blob {token!r} was never uploaded")
        subs = self.submissions.setdefault(slug, [])
        ref = 5000 + sum(len(v) for v in self.submissions.values())
        desc = b.get("submissionDescription", "")
        pub, priv = self.scores.get(desc, ("", ""))
        self.submission_tokens[ref] = token
        subs.insert(0, {"ref": ref, "fileName": self.blob_names[token], "description": desc, "totalBytes": len(self.blobs[token]),
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                        "status": "COMPLETE" if pub else "PENDING", "publicScore": pub, "privateScore": priv})
        return {"message": "Successfully submitted to the stand-in competition", "ref": ref}

    def api_ListSubmissions(self, b: dict) -> dict:
        return {"submissions": self.submissions.get(b.get("competitionName", ""), [])}

    def api_GetSubmissionLimits(self, b: dict) -> dict:
        return {"numToday": len(self.submissions.get(b.get("competitionName", ""), [])), "numAllowedNow": 5}

    def submitted_bytes(self, slug: str, index: int = 0) -> bytes:
        return self.blobs[self.submission_tokens[self.submissions[slug][index]["ref"]]]


class _Redirect(Exception):
    def __init__(self, url: str):
        self.url = url


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    timeout = 10  # seconds per socket operation: a stuck client cannot hang the test
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _path(self) -> str:
        return urlsplit(self.path).path  # absolute-form (proxy) or origin-form

    def _send(self, code: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self) -> None:
        parts = self._path().strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "v1"]:
            return self._send(404, json.dumps({"code": 404, "message": f"no route {self._path()}"}).encode())
        try:
            out = self.standin.dispatch(parts[2], parts[3], json.loads(self._body() or b"{}"))
            self._send(200, json.dumps(out).encode())
        except _Redirect as r:
            self._send(302, b"", headers={"Location": r.url})
        except ApiError as e:
            self._send(e.code, json.dumps({"code": e.code, "message": e.message}).encode())

    def do_PUT(self) -> None:
        parts = self._path().strip("/").split("/")
        data = self._body()
        if len(parts) == 2 and parts[0] == "upload" and parts[1] in self.standin.blob_names:
            self.standin.blobs[parts[1]] = data
            return self._send(200, b"{}")
        self._send(404, b'{"code": 404, "message": "unknown upload url"}')

    def do_GET(self) -> None:
        parts = self._path().strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "download" and parts[1] in self.standin.blobs:
            return self._send(200, self.standin.blobs[parts[1]], "application/octet-stream",
                              {"Last-Modified": formatdate(time.time(), usegmt=True)})
        self._send(200 if parts == [""] else 404, b"{}")

    do_HEAD = do_GET
