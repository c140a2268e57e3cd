"""A test LMS for cmi5 and Tin Can, launching AUs the way the specifications say, against a real LRS.

- The LRS is Ralph LRS 5 (``ralph-malph`` from PyPI, as ``make bench`` uses it: its own virtual
  environment ``bench/.ralph-venv``, the file backend, ``bench/ralph_app.py``), one per test
  session. Ralph implements the xAPI Statements resource only, so the LMS's endpoint
  (``/xapi/``) forwards ``statements`` to Ralph as they are (the AU's own Authorization
  header included) and keeps the State, Agent Profile and Activity Profile documents itself,
  in memory, as an LMS's LRS would.
- cmi5 (cmi5 spec, section 8 "Content Launch Mechanisms" and 10 "xAPI State Data Model"):
  before a launch the LMS writes the ``launched`` statement and the ``LMS.LaunchData`` state
  document (contextTemplate with the session ID, launchMode, moveOn, launchParameters), then
  opens the AU's URL with ``endpoint``, ``fetch``, ``actor``, ``registration`` and
  ``activityId``. The ``fetch`` URL gives the auth token once (``{"auth-token": ...}``); any
  later call gets the spec's error answer. Every call is counted, with its Origin.
- Tin Can (the Tin Can launch guidelines): ``endpoint``, ``auth`` (the Basic credentials),
  ``actor``, ``registration``, ``activity_id``.

Packages are served from ``/pkg/<name>/`` by the same server (the LMS origin,
``http://localhost:PORT``); the LRS answers CORS, so a course on another origin (a remote
package on the content origin) reaches it as it would a real LMS's.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from conftest import ROOT, free_port, require
from scorm_content import QuietHandler

BENCH = ROOT / "bench"
XAPI_VERSION = "1.0.3"
CMI5_SESSION = "https://w3id.org/xapi/cmi5/context/extensions/sessionid"
VERBS = "http://adlnet.gov/expapi/verbs/"
CMI5_CATEGORY = "https://w3id.org/xapi/cmi5/context/categories/cmi5"


class Ralph:
    """Ralph LRS over plain HTTP on the loopback, with one Basic account."""

    user, password = "lms", "lms-password"

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def start(self) -> Ralph:
        from bench.ingest import RalphLRS

        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder / "uvicorn.log", "ab")  # noqa: SIM115 (closed in stop)
        try:
            self.process = RalphLRS.serve(self.folder, self.user, self.password, self.port, 1, self.log)
        except (OSError, subprocess.CalledProcessError) as exc:
            require(False, f"Ralph LRS could not be installed or started (pip ralph-malph): {exc}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Ralph LRS exited: " + (self.folder / "uvicorn.log").read_text()[-2000:])
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/__heartbeat__", timeout=5) as response:
                    if response.status == 200:
                        return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("Ralph LRS did not answer /__heartbeat__")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def request(self, method: str, path_and_query: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path_and_query, data=body, method=method,
                                         headers={"Authorization": f"Basic {self.basic}",
                                                  "X-Experience-API-Version": XAPI_VERSION,
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def statements(self, registration: str) -> list[dict]:
        """Every statement stored for a registration, oldest first."""
        status, _, body = self.request("GET", f"/xAPI/statements?registration={registration}&limit=500")
        assert status == 200, body[:500]
        return sorted(json.loads(body)["statements"], key=lambda s: (s.get("stored") or "", s.get("timestamp") or ""))


@pytest.fixture(scope="session")
def ralph(tmp_path_factory):
    lrs = Ralph(tmp_path_factory.mktemp("ralph")).start()
    yield lrs
    lrs.stop()


CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, PUT, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Experience-API-Version, If-Match, "
                                        "If-None-Match",
        "Access-Control-Expose-Headers": "ETag, Last-Modified, X-Experience-API-Version, X-Experience-API-Consistent-Through",
        "Access-Control-Max-Age": "600"}


class XapiLms:
    """The LMS: packages under /pkg/, the fetch URLs, the LRS endpoint at /xapi/."""

    def __init__(self, root: Path, ralph: Ralph):
        self.root, self.ralph = root, ralph
        self.documents: dict[tuple, tuple[str, bytes]] = {}
        self.tokens: dict[str, dict] = {}  # fetch token -> {"calls": [...], "registration": ...}
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                                      functools.partial(_Handler, self, directory=str(root)))
        self.url = f"http://localhost:{self.server.server_address[1]}"  # an allowed origin may be http:// on localhost
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- packages ---

    def add(self, name: str, data: bytes) -> str:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(self.root / "pkg" / name)
        return f"{self.url}/pkg/{name}"

    def add_zip(self, name: str, path: Path) -> str:
        return self.add(name, path.read_bytes())

    # --- launching (what the LMS does when the learner opens the AU) ---

    def actor(self, name: str = "learner-42", display: str | None = "Doe, Jane") -> dict:
        actor = {"objectType": "Agent", "account": {"homePage": self.url, "name": name}}
        if display is not None:
            actor["name"] = display
        return actor

    def launch_cmi5(self, au_url: str, activity_id: str, actor: dict | str | None = None, move_on: str = "Passed",
                    launch_parameters: str | None = None, registration: str | None = None) -> tuple[str, str]:
        """(launch URL, registration). ``actor`` as a dict, or the raw string a hostile LMS might send."""
        registration = registration or str(uuid.uuid4())
        actor = self.actor() if actor is None else actor
        agent = actor if isinstance(actor, dict) else self.actor()
        session = str(uuid.uuid4())
        context = {"registration": registration, "contextActivities": {
            "category": [{"id": CMI5_CATEGORY}]}, "extensions": {CMI5_SESSION: session}}
        launched = {"id": str(uuid.uuid4()), "actor": agent, "verb": {"id": VERBS + "launched",
                                                                      "display": {"en-US": "Launched"}},
                    "object": {"id": activity_id, "objectType": "Activity"},
                    "context": {**context, "extensions": {
                        **context["extensions"],
                        "https://w3id.org/xapi/cmi5/context/extensions/launchmode": "Normal",
                        "https://w3id.org/xapi/cmi5/context/extensions/moveon": move_on}},
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
        status, _, body = self.ralph.request("POST", "/xAPI/statements", json.dumps(launched).encode(),
                                             {"Content-Type": "application/json"})
        assert status == 200, body[:500]
        launch_data = {"contextTemplate": {"extensions": {CMI5_SESSION: session},
                                           "contextActivities": {"grouping": [{"objectType": "Activity",
                                                                              "id": activity_id}]}},
                       "launchMode": "Normal", "moveOn": move_on}
        if launch_parameters:
            launch_data["launchParameters"] = launch_parameters
        key = ("activities/state", activity_id, _agent_key(agent), registration, "LMS.LaunchData")
        self.documents[key] = ("application/json", json.dumps(launch_data).encode())
        token = uuid.uuid4().hex
        self.tokens[token] = {"calls": [], "registration": registration}
        query = {"endpoint": f"{self.url}/xapi/", "fetch": f"{self.url}/fetch/{token}",
                 "actor": actor if isinstance(actor, str) else json.dumps(actor), "registration": registration,
                 "activityId": activity_id}
        return au_url + ("&" if "?" in au_url else "?") + urlencode(query, quote_via=quote), registration

    def launch_tincan(self, au_url: str, activity_id: str, actor: dict | str | None = None,
                      registration: str | None = None) -> tuple[str, str]:
        registration = registration or str(uuid.uuid4())
        actor = self.actor() if actor is None else actor
        query = {"endpoint": f"{self.url}/xapi/", "auth": f"Basic {self.ralph.basic}",
                 "actor": actor if isinstance(actor, str) else json.dumps(actor), "registration": registration,
                 "activity_id": activity_id}
        return au_url + ("&" if "?" in au_url else "?") + urlencode(query, quote_via=quote), registration

    def fetch_calls(self, registration: str) -> list[dict]:
        return [call for token in self.tokens.values() if token["registration"] == registration
                for call in token["calls"]]


def _agent_key(agent) -> str:
    if isinstance(agent, str):
        with contextlib.suppress(ValueError):
            agent = json.loads(agent)
    if isinstance(agent, dict):
        account = agent.get("account") or {}
        return json.dumps({"mbox": agent.get("mbox"), "account": [account.get("homePage"), account.get("name")]})
    return str(agent)


class _Handler(QuietHandler):
    def __init__(self, lms: XapiLms, *args, **kwargs):
        self.lms = lms
        super().__init__(*args, **kwargs)

    def _answer(self, status: int, body: bytes = b"", content_type: str = "application/json",
                headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {**CORS, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("X-Experience-API-Version", XAPI_VERSION)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_OPTIONS(self):  # noqa: N802
        self._answer(204)

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/xapi/"):
            return self._xapi("GET")
        return super().do_GET()

    def do_PUT(self):  # noqa: N802
        return self._xapi("PUT")

    def do_DELETE(self):  # noqa: N802
        return self._xapi("DELETE")

    def do_POST(self):  # noqa: N802
        if self.path.startswith("/fetch/"):
            return self._fetch()
        return self._xapi("POST")

    def _fetch(self) -> None:
        """cmi5 8.2.3: the auth token, once; a second call is an error (error-code 1)."""
        self._body()
        token = self.lms.tokens.get(self.path.split("/")[2])
        if token is None:
            return self._answer(404, b'{"error-code": "3", "error-text": "unknown fetch URL"}')
        with self.lms.lock:
            token["calls"].append({"origin": self.headers.get("Origin"), "referer": self.headers.get("Referer")})
            first = len(token["calls"]) == 1
        if not first:
            return self._answer(200, b'{"error-code": "1", "error-text": "already in use"}')
        return self._answer(200, json.dumps({"auth-token": self.lms.ralph.basic}).encode())

    def _xapi(self, method: str) -> None:
        body = self._body() if method in ("PUT", "POST") else b""
        parts = urlsplit(self.path)
        resource = parts.path[len("/xapi/"):].strip("/")
        query = parse_qs(parts.query)
        authorization = self.headers.get("Authorization")
        content_type = self.headers.get("Content-Type") or "application/json"
        if method == "POST" and "method" in query:
            # xAPI 1.0.3 "Alternate Request Syntax" (what SCORM Driver sends while the page unloads): the
            # real method in the query, the headers and the content as form fields of the body.
            method = query.pop("method")[0].upper()
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            authorization = (form.pop("Authorization", None) or [None])[0]
            content_type = (form.pop("Content-Type", None) or ["application/json"])[0]
            body = (form.pop("content", None) or [""])[0].encode("utf-8")
            form.pop("X-Experience-API-Version", None)
            query.update(form)
        if resource == "about":
            return self._answer(200, json.dumps({"version": [XAPI_VERSION]}).encode())
        if not resource.startswith(("statements", "activities", "agents")):
            return self._answer(404, b"{}")
        if authorization != f"Basic {self.lms.ralph.basic}":
            return self._answer(401, b'{"error": "unauthorised"}')
        if resource == "statements":
            status, answer_headers, answer = self.lms.ralph.request(
                method, "/xAPI/statements" + (f"?{urlencode(query, doseq=True)}" if query else ""), body or None,
                {"Content-Type": content_type})
            keep = {k: v for k, v in answer_headers.items() if k.lower() in ("x-experience-api-consistent-through",)}
            return self._answer(status, answer, answer_headers.get("content-type", "application/json"), keep)
        return self._document(method, resource, query, body, content_type)

    def _document(self, method: str, resource: str, query: dict, body: bytes, content_type: str) -> None:
        """State, agent profile and activity profile documents, kept in memory."""
        def one(name):
            return (query.get(name) or [None])[0]

        id_name = {"activities/state": "stateId", "agents/profile": "profileId",
                   "activities/profile": "profileId"}.get(resource)
        if id_name is None:
            return self._answer(404, b"{}")
        agent = one("agent")
        base = (resource, one("activityId"), _agent_key(agent) if agent else None, one("registration"))
        doc_id = one(id_name)
        documents = self.lms.documents
        with self.lms.lock:
            if method == "GET":
                if doc_id is None:
                    ids = [key[4] for key in documents if key[:4] == base]
                    return self._answer(200, json.dumps(ids).encode())
                found = documents.get((*base, doc_id))
                if found is None:
                    return self._answer(404, b"")
                return self._answer(200, found[1], found[0])
            if method == "DELETE":
                for key in [k for k in documents if k[:4] == base and (doc_id is None or k[4] == doc_id)]:
                    del documents[key]
                return self._answer(204)
            old = documents.get((*base, doc_id))
            if method == "POST" and old is not None and "json" in old[0] and "json" in content_type:
                with contextlib.suppress(ValueError):
                    body = json.dumps({**json.loads(old[1]), **json.loads(body)}).encode()
            documents[(*base, doc_id)] = (content_type, body)
        return self._answer(204)


@pytest.fixture
def xapi_lms(tmp_path, ralph):
    root = tmp_path / "xapi-lms"
    (root / "pkg").mkdir(parents=True)
    (root / "favicon.ico").write_bytes(b"")
    lms = XapiLms(root, ralph)
    yield lms
    lms.close()


def verbs(statements: list[dict]) -> list[str]:
    return [s["verb"]["id"].rsplit("/", 1)[-1] for s in statements]

