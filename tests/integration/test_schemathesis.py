"""schemathesis against `contracts/openapi.yaml` and a real running server (SQLite).

The server is the app of `mfa serve` (`create_app`: projections, relay, in-process bus and `/ws`
included) on a free loopback port, run by an event loop in a thread of its own. Every documented
operation but `/ws` (a WebSocket) gets generated requests, valid and invalid, twice: without a
session, and with the session cookie of an organization admin who has 2FA on and an open
password-confirmation window (so the calls behind the window answer too). Each answer must be
documented: its status for that operation, its content type, its headers (`Retry-After` on 429
and 503) and its body schema; no 5xx but a documented 503 `unavailable`; and every error body is
`{"error": {"code", "message"}}` with a code the document lists for that operation and status.

Bounded and deterministic, for CI: a fixed seed, derandomized Hypothesis without an example
database, a frozen server clock, and at most MAX_EXAMPLES fuzzed requests per operation (plus the
deterministic cases of schemathesis' examples and coverage phases).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
import schemathesis
import yaml
from aiohttp import web
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis import Case, CheckContext, Response

from services.mfa.config import Settings
from services.mfa.domain.clock import FrozenClock
from services.mfa.http.app import create_app
from services.mfa.http.auth import COOKIE
from services.mfa.http.context import SERVICE
from tests.conftest import FAST_PASSWORDS, SECRET_KEY, START

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "openapi.yaml"
SEED = 20261128
MAX_EXAMPLES = 25
ADMIN_EMAIL = "admin@schemathesis.example"
ADMIN_PASSWORD = "admin-password-schemathesis"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

CONTRACT = yaml.safe_load(DOCUMENT.read_text())
ERROR_CODES = set(CONTRACT["components"]["schemas"]["ErrorCode"]["enum"])


class LiveServer:
    """The API on 127.0.0.1:<free port>. Its event loop runs in a thread of its own: the
    generated requests are blocking `requests` calls from the test's thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mfa-live",
                                       daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        app = create_app(self.settings, clock=FrozenClock(START), passwords=FAST_PASSWORDS)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        # The organization, as `mfa create-org` makes it.
        service = app[SERVICE]
        written = await service.call(
            service.app.create_organization, "Acme", ADMIN_EMAIL, "Ada Admin",
            FAST_PASSWORDS.hash(ADMIN_PASSWORD), "support:schemathesis")
        await service.settle(written.position)

    def stop(self) -> None:
        try:
            if self.runner is not None:
                self.run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    server = LiveServer(Settings(database_url=f"sqlite:///{tmp / 'mfa.db'}",
                                 secret_key=SECRET_KEY, var_dir=tmp / "var"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class Admin:
    token: str  # the session cookie
    admin_id: str
    client_id: str  # a client of the admin's organization


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> Admin:
    """Made before any generated request: those fill the password counters of 127.0.0.1 with
    wrong logins, and the frozen clock never empties them. Through the API, as a browser does:
    log in, create a client, open the window, configure 2FA (the window stays open: the clock
    is frozen)."""
    http = requests.Session()

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = http.request(method, f"{live_server.url}{path}", json=body, timeout=30)
        assert response.status_code in (200, 201), (method, path, response.text)
        return response.json()

    assert call("POST", "/api/login",
                {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}) == {"next": "done"}
    client = call("POST", "/api/admin/users", {
        "email": "client@schemathesis.example", "name": "Carl Client", "role": "client",
        "password": "client-password-1", "two_factor_required": False})
    call("POST", "/api/me/reauthenticate", {"password": ADMIN_PASSWORD})
    setup = call("POST", "/api/me/2fa/setup", {})
    code = pyotp.TOTP(setup["setup_key"].replace(" ", "")).at(START.timestamp())
    call("POST", "/api/me/2fa/setup/verify", {"code": code})
    me = call("GET", "/api/me")
    assert me["two_factor"]["status"] == "on"
    token = http.cookies.get(COOKIE)
    assert token
    return Admin(token, me["user_id"], client["user_id"])


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "checks": {
            # A 5xx is a failure, but a 503 `unavailable` the operation documents (that it is
            # documented there is status_code_conformance's to check).
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
        },
    })


def _schema() -> Any:
    schema = schemathesis.openapi.from_path(DOCUMENT, config=_config())
    # /ws is a WebSocket handshake, which schemathesis cannot speak.
    return schema.exclude(path="/ws")


ANONYMOUS = _schema()
# Logging out would end the admin session the rest of the run needs (logout is exercised
# without a session by the anonymous run).
AS_ADMIN = _schema().exclude(method="POST", path="/api/logout")


def _documented(case: Case, status: int) -> dict[str, Any] | None:
    """The response the document gives for this operation and status, $refs resolved."""
    operation = CONTRACT["paths"][case.operation.path][case.operation.method.lower()]
    node = operation["responses"].get(str(status))
    while isinstance(node, dict) and "$ref" in node:
        target: Any = CONTRACT
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


@schemathesis.check
def error_body_is_the_contract(ctx: CheckContext, response: Response, case: Case) -> bool:
    """`{"error": {"code", "message"}}` for every error of the API (the probes of methods a
    path does not serve included), its code one the document lists for this operation and
    status when the status is documented there (an undocumented one fails
    status_code_conformance)."""
    if response.status_code < 400 or case.operation.path == "/readyz":
        return True
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["message"], str) and error["code"] in ERROR_CODES, body
    documented = _documented(case, response.status_code)
    if case.method.upper() == case.operation.method.upper() and documented is not None:
        listed = documented.get("x-error-codes", [])
        assert error["code"] in listed, (
            f"{error['code']} is not listed for {response.status_code} of "
            f"{case.operation.label}: {listed}")
    if response.status_code in (429, 503):
        assert int(response.headers["retry-after"][0]) >= 1, response.headers
    return True


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    error_body_is_the_contract,
]
HYPOTHESIS = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None,
                      deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))


def _call(case: Case, server: LiveServer, token: str | None = None) -> Response:
    headers = {}
    if case.method.upper() in STATE_CHANGING and case.media_type is None:
        # The CSRF rule wants this header even without a body, as real clients send it.
        headers["Content-Type"] = "application/json"
    operation = CONTRACT["paths"][case.operation.path][case.operation.method.lower()]
    cookies = {}
    if token is not None and operation.get("security", CONTRACT["security"]):
        # Not to the calls without security: POST /api/login would end the session.
        cookies[COOKIE] = token
    return case.call_and_validate(base_url=server.url, headers=headers, cookies=cookies,
                                  checks=CHECKS, timeout=30)


def _aim_at_real_users(case: Case, admin: Admin) -> None:
    """Random user ids only find no one (404): a valid one is replaced, deterministically for
    two thirds of them, by the admin's own id or the id of a client of the organization, so
    the answers about real users (200s, the admin's own reset, `at` checks) are checked too."""
    parameters = case.path_parameters or {}
    if "user_id" not in parameters:
        return
    try:
        generated = uuid.UUID(str(parameters["user_id"]))
    except ValueError:
        return  # an invalid id on purpose: keep it
    chosen = (admin.admin_id, admin.client_id, None)[generated.int % 3]
    if chosen is not None:
        parameters["user_id"] = chosen


@ANONYMOUS.parametrize()
@HYPOTHESIS
def test_the_api_answers_strangers_as_documented(case: Case, live_server: LiveServer,
                                                 admin: Admin) -> None:
    # `admin` only to log in before the wrong logins of this run count against 127.0.0.1.
    _call(case, live_server)


@AS_ADMIN.parametrize()
@HYPOTHESIS
def test_the_api_answers_an_admin_as_documented(case: Case, live_server: LiveServer,
                                                admin: Admin) -> None:
    _aim_at_real_users(case, admin)
    response = _call(case, live_server, admin.token)
    if response.status_code == 401 and case.operation.path != "/api/login":
        # The admin's session must outlive the run, or the rest of it tests nothing.
        assert response.json()["error"]["code"] != "unauthenticated", case.operation.label


def test_the_admin_session_outlived_the_run(live_server: LiveServer, admin: Admin) -> None:
    response = requests.get(f"{live_server.url}/api/session", cookies={COOKIE: admin.token},
                            timeout=30)
    assert response.status_code == 200, response.text


# Needs a code of the admin's authenticator app, which no generator guesses.
NEVER_SUCCEEDS = {
    ("POST", "/api/login/second-factor"),
    # A security key's signed answer, or an existing key's id, cannot be generated from the
    # document: tests/integration/test_passkeys.py drives these with a software authenticator.
    ("POST", "/api/login/passkey/options"), ("POST", "/api/login/passkey"),
    ("POST", "/api/me/passkeys"), ("PATCH", "/api/me/passkeys/{passkey_id}"),
    ("DELETE", "/api/me/passkeys/{passkey_id}"),
}


def test_every_operation_was_answered_with_success(live_server: LiveServer) -> None:
    """The runs above reached past the session and CSRF rules: every operation (but the second
    factor) answered a 2xx at least once (`/metrics` counts answers per route and status)."""
    text = requests.get(f"{live_server.url}/metrics", timeout=30).text
    succeeded = set()
    for family in text_string_to_metric_families(text):
        if family.name == "mfa_http_request_duration_seconds":
            succeeded |= {(sample.labels["method"], sample.labels["route"])
                          for sample in family.samples if sample.name.endswith("_count")
                          and sample.labels["status"] == "2xx" and sample.value > 0}
    documented = {(method.upper(), path) for path, item in CONTRACT["paths"].items()
                  for method in item if method != "parameters" and path != "/ws"}
    assert documented - NEVER_SUCCEEDS - succeeded == set()


# Found by probing cookies by hand (schemathesis sends ASCII header values only): bytes that are
# not UTF-8, digits that are not ASCII. Each answered 500 `internal` before the fix.
ODD_COOKIES = [
    pytest.param("GET", "/api/me", b"mfa_session=\xff\xfe", id="session-not-utf8-me"),
    pytest.param("GET", "/api/session", b"mfa_session=\xff\xfe", id="session-not-utf8-check"),
    pytest.param("POST", "/api/logout", b"mfa_session=\xff\xfe", id="session-not-utf8-logout"),
    pytest.param("POST", "/api/login", b"mfa_session=\xff\xfe", id="session-not-utf8-login"),
    pytest.param("GET", "/ws", b"mfa_session=\xff\xfe", id="session-not-utf8-ws"),
    pytest.param("POST", "/api/login", "mfa_device=d1.nonce.\u00b2.signature".encode(),
                 id="device-superscript-digit"),
    pytest.param("POST", "/api/login",
                 b"mfa_device=d1.\xff.%d.signature" % (START.timestamp() - 10),
                 id="device-nonce-not-utf8"),
]


@pytest.mark.parametrize(("method", "path", "cookie"), ODD_COOKIES)
def test_cookies_of_any_bytes_get_a_4xx(live_server: LiveServer, method: str, path: str,
                                        cookie: bytes) -> None:
    response = requests.request(
        method, f"{live_server.url}{path}", timeout=30,
        headers={"Cookie": cookie, "Content-Type": "application/json"},
        data=b'{"email": "nobody@example.com", "password": "wrong password"}')
    assert response.status_code < 500, (response.status_code, response.text)
