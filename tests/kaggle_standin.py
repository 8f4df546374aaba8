"""A small stand-in for the Kaggle API, so the real ``kaggle`` CLI can be tested offline.

How the real client is pointed here (kaggle 2.2.4 / kagglesdk 0.1.x): the CLI builds its
client with an explicit environment, so ``KAGGLE_API_ENVIRONMENT=TEST`` (localhost:7777) is
ignored by the CLI; ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` sends every call to
``http://localhost/api/v1/<Service>/<Method>`` (port 80). Setting ``HTTP_PROXY`` to this
server makes requests deliver those calls here on any free loopback port — the server
accepts both absolute-form (proxy) and origin-form request lines. See :meth:`StandIn.env`.

It is deliberately as unfriendly as the real service (each point is something the workspace
got wrong against a friendlier fake):

* every API call is authenticated: HTTP basic (legacy ``username``/``key``) or a bearer token
  (``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``); anything else is answered 401, including the
  ``IntrospectToken`` call the CLI makes to learn the user name behind a token;
* a new dataset (version) is processed asynchronously: ``GetDatasetStatus`` says
  ``BLOBS_RECEIVED`` for ``processing_polls`` polls, then ``READY``; creating a version while the
  previous one is processing is refused with 403; uploaded ``X.zip`` files are unzipped into ``X/``
  (what kernels see); a kernel pushed meanwhile mounts the last READY version (``mounted``);
* kernel outputs are paged (``pageSize``/``nextPageToken``) and the log is a JSON array of
  ``{stream_name, time, data}`` events, as Kaggle stores it;
* competitions can be code-only (``isKernelsSubmissionsOnly``: a CSV submission is refused; a
  kernel version's output is submitted with ``CreateCodeSubmission``) and can have rules not yet
  accepted (403 on download and submit);
* ``GetAcceleratorQuotaStatistics`` reports the weekly GPU quota (``gpu_quota_h``).

Implemented calls (JSON in, JSON out, shapes from kagglesdk's ``*_api_service.py`` types):

* ``kernels.KernelsApiService``: SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput,
  GetAcceleratorQuotaStatistics
* ``datasets.DatasetApiService``: GetDatasetStatus, GetDataset, CreateDataset, CreateDatasetVersion
* ``blobs.BlobApiService``: StartBlobUpload (+ ``PUT /upload/<token>``)
* ``competitions.CompetitionApiService``: ListCompetitions, DownloadDataFiles (302 to
  ``GET /download/...``), StartSubmissionUpload, CreateSubmission, CreateCodeSubmission,
  ListSubmissions, GetSubmissionLimits
* ``security.OAuthService``: IntrospectToken

Everything received is recorded in ``calls`` (service, method, JSON body), ``blobs`` (uploaded
bytes by token) and ``auth`` (the credential each call carried: ``basic:<user>``,
``bearer:<user>`` or ``rejected``). Tests script behaviour through the public fields below.
Errors use Kaggle's JSON error shape ``{"code": N, "message": ...}`` that kagglesdk turns into an
``HTTPError`` carrying the message. Loopback only; every request has a socket timeout.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

PROCESSING_403 = "The previous version of this dataset is still being processed; wait until it is ready before creating a new version"
RULES_403 = "You must accept this competition's rules before you'll be able to download files or submit"
CODE_ONLY_400 = "This competition only accepts submissions from notebooks (code competition)"


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class StandIn:
    """State of the fake service; ``start()`` binds 127.0.0.1 on a free port."""

    user: str = "testuser"
    keys: dict[str, str] = field(default_factory=dict)  # legacy user -> key; default {user: "standin-key"}
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> user; default {"standin-token": user}
    competitions: set[str] = field(default_factory=set)
    code_competitions: set[str] = field(default_factory=set)  # isKernelsSubmissionsOnly
    rules_not_accepted: set[str] = field(default_factory=set)  # 403 on download/submit
    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    blob_names: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, list[dict]] = field(default_factory=dict)  # "owner/slug" -> SaveKernel bodies (one per version)
    mounted: dict[str, list[dict[str, int]]] = field(default_factory=dict)  # kernel -> per version: dataset -> READY version it sees
    kernel_status: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # ref -> [(status, failure)], popped per poll
    kernel_outputs: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref -> {relative file name: bytes}
    kernel_logs: dict[str, str] = field(default_factory=dict)  # ref -> plain text; served as Kaggle's JSON array
    output_page_size: int = 20  # files per ListKernelSessionOutput page when the request names none
    datasets: dict[str, list[dict]] = field(default_factory=dict)  # ref -> versions (see _new_version)
    processing_polls: int = 1  # GetDatasetStatus polls a new version stays BLOBS_RECEIVED (tests raise it)
    competition_zips: dict[str, bytes] = field(default_factory=dict)
    submissions: dict[str, list[dict]] = field(default_factory=dict)  # slug -> ApiSubmission dicts (newest first)
    reject_submission: str = ""  # non-empty: CreateSubmission answers 400 with this message
    scores: dict[str, tuple[str, str]] = field(default_factory=dict)  # description -> (public, private)
    submission_tokens: dict[int, str] = field(default_factory=dict)  # submission ref -> blob token
    code_submissions: dict[int, dict] = field(default_factory=dict)  # submission ref -> {kernel, version, file}
    gpu_quota_h: tuple[float, float] = (0.0, 30.0)  # (used, total) weekly GPU hours
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.keys = self.keys or {self.user: "standin-key"}
        self.tokens = self.tokens or {"standin-token": self.user}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "StandIn":
        state = self

        class Handler(_Handler):
            standin = state

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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
        """Environment for a ``kaggle`` subprocess that talks to this server with throw-away legacy credentials."""
        return {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": self.base, "http_proxy": self.base,
                "NO_PROXY": "", "no_proxy": "", "HOME": home, "KAGGLE_CONFIG_DIR": f"{home}/.kaggle",
                "KAGGLE_USERNAME": self.user, "KAGGLE_KEY": self.keys[self.user], "TMPDIR": home}

    def received(self, method: str) -> list[dict]:
        return [body for _, m, body in self.calls if m == method]

    # ------------------------------------------------------------------ authentication

    def authenticate(self, header: str) -> str:
        """The user behind an ``Authorization`` header; 401 for anything Kaggle would not accept."""
        kind, _, cred = (header or "").partition(" ")
        who = ""
        if kind == "Bearer":
            who = self.tokens.get(cred.strip(), "")
            label = f"bearer:{who}"
        elif kind == "Basic":
            user, _, key = base64.b64decode(cred.strip() or b"").decode(errors="replace").partition(":")
            who = user if self.keys.get(user) == key and key else ""
            label = f"basic:{who}"
        with self._lock:
            self.auth.append(label if who else "rejected")
        if not who:
            raise ApiError(401, "Unauthenticated: the API token or key is invalid, expired or missing")
        return who

    # ------------------------------------------------------------------ API methods

    def dispatch(self, service: str, method: str, body: dict, authorization: str) -> dict:
        with self._lock:
            self.calls.append((service, method, body))
        self.authenticate(authorization)
        fn: Callable[[dict], dict] | None = getattr(self, f"api_{method}", None)
        if fn is None:
            raise ApiError(404, f"stand-in: {service}/{method} is not implemented")
        return fn(body)

    def api_IntrospectToken(self, b: dict) -> dict:
        who = self.tokens.get(b.get("token", ""), "")
        return {"active": bool(who), "username": who}

    def _new_blob(self, name: str) -> dict:
        token = f"blob{len(self.blob_names) + 1:04d}"
        self.blob_names[token] = name
        return {"token": token, "createUrl": f"{self.base}/upload/{token}"}

    def api_StartBlobUpload(self, b: dict) -> dict:
        return self._new_blob(b.get("name", ""))

    def _competition(self, slug: str, action: str = "") -> str:
        if slug not in self.competitions:
            raise ApiError(404, f"Competition {slug!r} not found")
        if action and slug in self.rules_not_accepted:
            raise ApiError(403, RULES_403)
        return slug

    def api_ListCompetitions(self, b: dict) -> dict:
        hits = sorted(c for c in self.competitions if (b.get("search") or "") in c)
        return {"competitions": [{"id": 100 + i, "ref": f"https://www.kaggle.com/competitions/{c}", "title": c,
                                  "isKernelsSubmissionsOnly": c in self.code_competitions} for i, c in enumerate(hits)]}

    def api_StartSubmissionUpload(self, b: dict) -> dict:
        self._competition(b.get("competitionName", ""), "submit")
        return self._new_blob(b.get("fileName", ""))

    # ------------------------------------------------------------------ kernels

    def api_SaveKernel(self, b: dict) -> dict:
        """A new kernel version; it mounts each dataset's newest READY version (a processing one is not seen)."""
        slug = b.get("slug") or ""
        if "/" not in slug or not b.get("text"):
            raise ApiError(400, "slug owner/name and text are required")
        versions = self.kernels.setdefault(slug, [])
        versions.append(b)
        seen = {d: self.ready_version(d) for d in b.get("datasetDataSources", []) if d in self.datasets}
        self.mounted.setdefault(slug, []).append(seen)
        bad_ds = [d for d in b.get("datasetDataSources", []) if not seen.get(d)]
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
        """One page of output files; the log (Kaggle's JSON array) rides along with every page."""
        ref = self._kernel(b)
        names = sorted(self.kernel_outputs.get(ref, {}))
        start = int(b.get("pageToken") or 0)
        size = int(b.get("pageSize") or self.output_page_size)
        files = []
        for name in names[start:start + size]:
            token = f"out{len(self.blobs) + 1:04d}"
            self.blobs[token] = self.kernel_outputs[ref][name]
            files.append({"url": f"{self.base}/download/{token}/{name.rsplit('/', 1)[-1]}", "fileName": name})
        nxt = str(start + size) if start + size < len(names) else None
        return {"files": files, "log": json_log(self.kernel_logs.get(ref, "")), **({"nextPageToken": nxt} if nxt else {})}

    def api_GetAcceleratorQuotaStatistics(self, b: dict) -> dict:
        used, total = self.gpu_quota_h
        return {"quotaRefreshTime": "2030-01-04T00:00:00.000Z",
                "gpuQuota": {"timeUsed": f"{int(used * 3600)}s", "totalTimeAllowed": f"{int(total * 3600)}s"},
                "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": f"{20 * 3600}s"}}

    # ------------------------------------------------------------------ datasets

    def _dataset(self, b: dict, slug_key: str = "datasetSlug") -> str:
        ref = f"{b.get('ownerSlug')}/{b.get(slug_key)}"
        if ref not in self.datasets:
            raise ApiError(404, f"Dataset {ref} not found")
        return ref

    def ready_version(self, ref: str) -> int:
        """The newest READY version number (0: none yet): what a kernel pushed now would mount."""
        ready = [i + 1 for i, v in enumerate(self.datasets.get(ref, [])) if v["status"] == "READY"]
        return ready[-1] if ready else 0

    def api_GetDatasetStatus(self, b: dict) -> dict:
        """The newest version's processing state; each poll brings a processing version closer to READY."""
        v = self.datasets[self._dataset(b)][-1]
        if v["status"] != "READY" and v["polls_left"] > 0:
            v["polls_left"] -= 1
            return {"status": "BLOBS_RECEIVED"}
        v["status"] = "READY" if v["status"] != "FAILED" else "FAILED"
        return {"status": v["status"]}

    def api_GetDataset(self, b: dict) -> dict:
        ref = self._dataset(b)
        return {"ref": ref, "currentVersionNumber": self.ready_version(ref)}

    def _new_version(self, files: list[dict], request: dict) -> dict:
        uploaded = {}
        for f in files:
            token = f.get("token", "")
            if token not in self.blobs:
                raise ApiError(400, f"blob token {token!r} was never uploaded")
            uploaded[self.blob_names[token]] = self.blobs[token]
        return {"uploaded": uploaded, "files": unzip_like_kaggle(uploaded), "request": request,
                "status": "READY" if self.processing_polls <= 0 else "PROCESSING", "polls_left": self.processing_polls}

    def api_CreateDataset(self, b: dict) -> dict:
        ref = f"{b.get('ownerSlug')}/{b.get('slug')}"
        if ref in self.datasets:
            return {"status": "error", "error": f"dataset {ref} already exists"}
        self.datasets[ref] = [self._new_version(b.get("files", []), b)]
        return {"ref": ref, "url": f"{self.base}/datasets/{ref}", "status": "ok"}

    def api_CreateDatasetVersion(self, b: dict) -> dict:
        ref = self._dataset(b)
        if self.datasets[ref][-1]["status"] != "READY":
            raise ApiError(403, PROCESSING_403)
        self.datasets[ref].append(self._new_version(b.get("body", {}).get("files", []), b))
        return {"ref": ref, "url": f"{self.base}/datasets/{ref}", "status": "ok"}

    def seed_dataset(self, ref: str, files: dict[str, bytes] | None = None) -> None:
        """A dataset that exists and is READY (for tests about other verbs)."""
        self.datasets[ref] = [{"uploaded": files or {}, "files": unzip_like_kaggle(files or {}), "request": {},
                               "status": "READY", "polls_left": 0}]

    # ------------------------------------------------------------------ competitions

    def api_DownloadDataFiles(self, b: dict) -> dict:
        slug = self._competition(b.get("competitionName", ""), "download")
        if slug not in self.competition_zips:
            raise ApiError(404, f"Competition {slug!r} has no data files")
        token = f"comp-{slug}"
        self.blobs[token] = self.competition_zips[slug]
        raise _Redirect(f"{self.base}/download/{token}/{slug}.zip")

    def _record_submission(self, slug: str, desc: str, file_name: str, size: int) -> int:
        subs = self.submissions.setdefault(slug, [])
        ref = 5000 + sum(len(v) for v in self.submissions.values())
        pub, priv = self.scores.get(desc, ("", ""))
        subs.insert(0, {"ref": ref, "fileName": file_name, "description": desc, "totalBytes": size,
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                        "status": "COMPLETE" if pub else "PENDING", "publicScore": pub, "privateScore": priv})
        return ref

    def api_CreateSubmission(self, b: dict) -> dict:
        slug = self._competition(b.get("competitionName", ""), "submit")
        if slug in self.code_competitions:
            raise ApiError(400, CODE_ONLY_400)
        if self.reject_submission:
            raise ApiError(400, self.reject_submission)
        token = b.get("blobFileTokens", "")
        if token not in self.blobs:
            raise ApiError(400, f"submission blob {token!r} was never uploaded")
        ref = self._record_submission(slug, b.get("submissionDescription", ""), self.blob_names[token], len(self.blobs[token]))
        self.submission_tokens[ref] = token
        return {"message": "Successfully submitted to the stand-in competition", "ref": ref}

    def api_CreateCodeSubmission(self, b: dict) -> dict:
        """A kernel version's output file, submitted to a (code) competition: the kernel, version and file must exist."""
        slug = self._competition(b.get("competitionName", ""), "submit")
        kernel = f"{b.get('kernelOwner')}/{b.get('kernelSlug')}"
        version, name = b.get("kernelVersion"), b.get("fileName") or "submission.csv"
        if kernel not in self.kernels or not version or not 1 <= int(version) <= len(self.kernels[kernel]):
            raise ApiError(404, f"Kernel {kernel} version {version} not found")
        if name not in self.kernel_outputs.get(kernel, {}):
            raise ApiError(400, f"Kernel {kernel} version {version} has no output file {name!r}")
        ref = self._record_submission(slug, b.get("submissionDescription", ""), name, len(self.kernel_outputs[kernel][name]))
        self.code_submissions[ref] = {"kernel": kernel, "version": int(version), "file": name}
        return {"message": "Your code submission was queued", "ref": ref}

    def api_ListSubmissions(self, b: dict) -> dict:
        return {"submissions": self.submissions.get(b.get("competitionName", ""), [])}

    def api_GetSubmissionLimits(self, b: dict) -> dict:
        return {"numToday": len(self.submissions.get(b.get("competitionName", ""), [])), "numAllowedNow": 5}

    def submitted_bytes(self, slug: str, index: int = 0) -> bytes:
        return self.blobs[self.submission_tokens[self.submissions[slug][index]["ref"]]]


def json_log(text: str) -> str:
    """A plain-text log as Kaggle stores a finished session's log: a JSON array of stream events."""
    events = [{"stream_name": "stderr" if ln.startswith("!") else "stdout", "time": round(0.5 * i, 3),
               "data": ln.removeprefix("!") + "\n"} for i, ln in enumerate(text.splitlines())]
    return json.dumps(events) if events else ""


def unzip_like_kaggle(files: dict[str, bytes]) -> dict[str, bytes]:
    """What kernels see of an uploaded dataset version: every ``X.zip`` unpacked into ``X/``, other files as sent."""
    out: dict[str, bytes] = {}
    for name, data in files.items():
        if not name.endswith(".zip"):
            out[name] = data
            continue
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for member in zf.namelist():
                if not member.endswith("/"):
                    out[f"{name[:-4]}/{member}"] = zf.read(member)
    return out


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
            body = json.loads(self._body() or b"{}")
            out = self.standin.dispatch(parts[2], parts[3], body, self.headers.get("Authorization", ""))
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
