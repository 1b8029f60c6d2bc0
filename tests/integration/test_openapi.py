"""`contracts/openapi.yaml` is a valid OpenAPI 3.1 document and true to the code: the same routes
as the server (the HTML pages aside), the same request fields as the pydantic bodies, and every
error code the server can answer with, each under the status the server gives it."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel

from services.mfa.config import Settings
from services.mfa.http import auth, errors, schemas
from services.mfa.http.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "openapi.yaml"
# The server-rendered HTML pages (and their /static/ files) are the browser UI on top of the
# API, not part of the JSON contract: every other route must be documented.
HTML_PAGES = "services.mfa.http.pages"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Raised by the HTTP layer (`ApiError(status, "code", ...)`) or the WebSocket (`_refuse(...)`).
RAISING_SOURCES = [*sorted((ROOT / "services" / "mfa" / "http").glob("*.py")),
                   ROOT / "services" / "notifier" / "websocket.py"]
# Codes no single operation lists: the framework's (any path) and the server's own faults; and
NOT_PER_OPERATION = {"method_not_allowed", "unsupported_media_type", "internal"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(loaded, dict)
    return loaded


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): operation
            for path, item in document["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS}


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def documented_error_codes(document: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(method, path, code, status) for every code an operation lists per status."""
    found = []
    for (method, path), operation in operations(document).items():
        for status, response in operation["responses"].items():
            for code in resolve(document, response).get("x-error-codes", []):
                found.append((method, path, code, int(status)))
    return found


def literal_errors(source: Path, *functions: str) -> dict[str, int]:
    """{code: status} of every call `f(status, "code", ...)` with literal arguments."""
    codes: dict[str, int] = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in functions and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Constant)):
            status, code = node.args[0].value, node.args[1].value
            assert isinstance(status, int) and isinstance(code, str), ast.unparse(node)
            codes[code] = status
    return codes


def raised_codes() -> dict[str, int]:
    """Every literal `ApiError(status, "code", ...)` / `_refuse(status, "code", ...)`."""
    codes: dict[str, int] = {}
    for source in RAISING_SOURCES:
        codes.update(literal_errors(source, "ApiError", "_refuse"))
    return codes


def server_codes() -> dict[str, int]:
    """Every error code the server can answer with, and its status."""
    codes = raised_codes()
    codes.update({code: status for status, code, _ in errors._DOMAIN.values()})
    codes.update({code: status for status, code in errors._HTTP_CODES.items()})
    return codes


def auth_codes() -> set[str]:
    """The codes of auth.py: session states, the window, and the helpers it raises."""
    codes = {error.code for error in auth._REFUSALS.values()}
    codes |= set(literal_errors(Path(auth.__file__), "ApiError"))
    codes |= {errors.unauthenticated().code, errors.forbidden("x").code}
    return codes


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_of_the_server_is_documented_and_nothing_else(
        document: dict[str, Any], tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'mfa.db'}",
                              secret_key="x" * 40))
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds one to every GET
            continue
        assert route.resource is not None
        if (isinstance(route.resource, web.StaticResource)
                or getattr(route.handler, "__module__", "") == HTML_PAGES):
            continue  # the browser UI, not the API this document describes
        served.add((route.method, route.resource.canonical))
    assert ("POST", "/api/login") in served
    documented = set(operations(document))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_the_session_cookie_is_the_one_the_server_sets(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["sessionCookie"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "cookie", auth.COOKIE)


def test_every_error_code_of_the_server_is_documented(document: dict[str, Any]) -> None:
    enum = set(document["components"]["schemas"]["ErrorCode"]["enum"])
    domain = {code for _, code, _ in errors._DOMAIN.values()}
    assert domain - enum == set(), "errors.py _DOMAIN codes missing from ErrorCode"
    assert auth_codes() - enum == set(), "auth.py codes missing from ErrorCode"
    assert set(server_codes()) - enum == set(), "server codes missing from ErrorCode"
    assert enum - set(server_codes()) == set(), "documented codes the server never answers"
    text = DOCUMENT.read_text()
    for code in domain | auth_codes():
        assert code in text


def test_each_listed_error_code_has_the_status_the_server_gives_it(
        document: dict[str, Any]) -> None:
    codes = server_codes()
    wrong = [(method, path, code, status, codes.get(code))
             for method, path, code, status in documented_error_codes(document)
             if codes.get(code) != status]
    assert wrong == []


def test_every_code_an_operation_can_meet_is_listed_on_some_operation(
        document: dict[str, Any]) -> None:
    listed = {code for _, _, code, _ in documented_error_codes(document)}
    assert set(server_codes()) - NOT_PER_OPERATION - listed == set()


def test_lockout_answers_document_retry_after(document: dict[str, Any]) -> None:
    for (method, path), operation in operations(document).items():
        if "429" in operation["responses"]:
            response = resolve(document, operation["responses"]["429"])
            assert "Retry-After" in response["headers"], (method, path)


def test_unavailable_answers_document_retry_after(document: dict[str, Any]) -> None:
    for (method, path), operation in operations(document).items():
        for status in ("429", "503"):
            if status not in operation["responses"]:
                continue
            response = resolve(document, operation["responses"][status])
            if status == "503" and "unavailable" not in response.get("x-error-codes", []):
                continue  # /readyz: its own body, not an error of the contract
            header = resolve(document, response.get("headers", {}).get("Retry-After", {}))
            assert header.get("required") is True, (method, path, status)


def served_handlers(tmp_path: Path) -> dict[tuple[str, str], Any]:
    """(method, path) -> handler of every documented (non-page) route of the server."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'mfa.db'}",
                              secret_key="x" * 40))
    handlers = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        if (isinstance(route.resource, web.StaticResource)
                or getattr(route.handler, "__module__", "") == HTML_PAGES):
            continue
        handlers[(route.method, route.resource.canonical)] = route.handler
    return handlers


def handler_calls(handler: Any) -> list[ast.Call]:
    try:
        source = textwrap.dedent(inspect.getsource(handler))
    except (OSError, TypeError):  # a closure built at run time (/ws): nothing to read
        return []
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]


def runs_a_command(handler: Any) -> bool:
    """Writes to the store (`service.command`), or checks or hashes a password (the hashing
    pool): both can answer 503 `unavailable` (ConcurrentUpdate, HashingBusy)."""
    for call in handler_calls(handler):
        name = ast.unparse(call.func)
        if name.endswith(".command") or ".logins." in name or ".hashing." in name:
            return True
    return False


def test_every_operation_that_runs_a_command_documents_unavailable(
        document: dict[str, Any], tmp_path: Path) -> None:
    documented = operations(document)
    commands = {key for key, handler in served_handlers(tmp_path).items()
                if runs_a_command(handler)}
    assert ("POST", "/api/login") in commands
    assert ("POST", "/api/admin/users") in commands
    missing = []
    for key in sorted(commands):
        response = resolve(document, documented[key]["responses"].get("503", {}))
        if "unavailable" not in response.get("x-error-codes", []):
            missing.append(key)
    assert missing == [], "run a command but do not document 503 unavailable"


def test_the_session_states_of_each_operation_are_those_the_handler_requires(
        document: dict[str, Any], tmp_path: Path) -> None:
    wrong = []
    for key, handler in served_handlers(tmp_path).items():
        required: set[str] | None = None
        for call in handler_calls(handler):
            name = ast.unparse(call.func)
            if name == "require" and call.args[1:]:
                states = [s.value for s in call.args[1:] if isinstance(s, ast.Constant)]
                assert len(states) == len(call.args) - 1, ast.unparse(call)
                required = {str(state) for state in states}
            elif name == "require_admin":
                required = {"done"}
        if required is None:
            continue  # no session needed, or its own rules (login, logout, /api/session)
        documented = set(operations(document)[key].get("x-session-states", []))
        if documented != required:
            wrong.append((key, sorted(documented), sorted(required)))
    assert wrong == []


def test_state_changing_calls_document_the_rules_every_one_of_them_goes_through(
        document: dict[str, Any]) -> None:
    """The middleware checks size, CSRF and that the body is a JSON object before any handler:
    413, 403 `forbidden` and 400 `validation_error` can answer every such call."""
    missing = []
    for (method, path), operation in operations(document).items():
        if method not in {"POST", "PUT", "PATCH", "DELETE"} or not path.startswith("/api/"):
            continue
        for status, code in (("400", "validation_error"), ("403", "forbidden"),
                             ("413", "payload_too_large")):
            response = resolve(document, operation["responses"].get(status, {}))
            if code not in response.get("x-error-codes", []):
                missing.append((method, path, status, code))
    assert missing == []


@pytest.mark.parametrize(("schema", "model"), [
    ("LoginRequest", schemas.LoginBody),
    ("CodeRequest", schemas.CodeBody),
    ("PasswordRequest", schemas.PasswordBody),
    ("NewUserRequest", schemas.NewUserBody),
    ("UserChangeRequest", schemas.UserChangeBody),
])
def test_request_bodies_have_the_fields_of_the_pydantic_models(
        document: dict[str, Any], schema: str, model: type[BaseModel]) -> None:
    body = document["components"]["schemas"][schema]
    assert set(body["properties"]) == set(model.model_fields)
    assert set(body.get("required", [])) == {
        name for name, field in model.model_fields.items() if field.is_required()}
