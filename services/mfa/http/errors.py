"""The one place where failures become HTTP responses: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from pydantic import ValidationError

from services.mfa.adapters.passwords import HashingBusy
from services.mfa.adapters.store_health import is_outage
from services.mfa.application import ConcurrentUpdate
from services.mfa.domain import errors as domain
from services.mfa.http.context import SERVICE
from services.mfa.projections.runner import ViewsBehind

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal decided by the HTTP layer itself (sessions, windows, tenancy, input)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthenticated(message: str = "log in first") -> ApiError:
    return ApiError(401, "unauthenticated", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str = "no such resource") -> ApiError:
    return ApiError(404, "not_found", message)


def validation_error(message: str) -> ApiError:
    return ApiError(400, "validation_error", message)


def unavailable(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(503, "unavailable", message, {"Retry-After": str(retry_after)})


_DOMAIN: dict[type[domain.DomainError], tuple[int, str, str]] = {
    domain.InvalidCredentials: (401, "invalid_credentials", "wrong email or password"),
    domain.InvalidCode: (401, "invalid_code", "wrong, expired or already used code"),
    domain.PasskeyCloned: (401, "invalid_code",
                           "this security key could not be trusted (its signature counter went "
                           "backwards: a copy of it may exist); use another factor"),
    domain.PasskeyNotFound: (404, "not_found", "no such security key or passkey"),
    domain.PasskeyAlreadyRegistered: (400, "validation_error",
                                      "credential: this security key is registered already"),
    domain.SecondFactorOwed: (401, "unauthenticated",
                              "2FA was configured in another session: enter your second factor"),
    domain.NoEnrollmentInProgress: (409, "no_setup_in_progress",
                                    "start the setup (POST /api/me/2fa/setup) first"),
    domain.SetupWindowExpired: (410, "setup_window_expired",
                                "the setup window ran out: re-enter your password"),
    domain.TwoFactorNotOn: (409, "two_factor_off", "2FA is not configured"),
    domain.TwoFactorRequired: (409, "two_factor_required",
                               "your administrator requires 2FA: it cannot be disabled"),
    domain.EmailAlreadyUsed: (409, "email_taken", "another account has this email"),
    domain.RequiredByPolicy: (409, "two_factor_required",
                              "the organization requires 2FA for all users (Settings > "
                              "Security policy)"),
    domain.AccountNotFound: (404, "not_found", "no such user"),
    domain.InvalidRole: (400, "validation_error", "role: 'client' or 'admin'"),
}


def from_domain(error: domain.DomainError, now_timestamp: float) -> ApiError:
    if isinstance(error, domain.LockedOut):
        wait = max(1, math.ceil(error.until.timestamp() - now_timestamp))
        return ApiError(429, "too_many_attempts",
                        f"too many failed attempts: try again in {wait} s",
                        {"Retry-After": str(wait)})
    status, code, message = _DOMAIN[type(error)]
    return ApiError(status, code, message)


def from_validation(error: ValidationError) -> ApiError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return validation_error(f"{where}: {first['msg']}")


def error_response(error: ApiError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message}}
    return web.Response(status=error.status, body=orjson.dumps(body),
                        content_type="application/json", headers=error.headers)


_HTTP_CODES = {
    404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e)
    except domain.DomainError as e:
        return error_response(from_domain(e, request.app[SERVICE].clock.now().timestamp()))
    except ValidationError as e:
        return error_response(from_validation(e))
    except ConcurrentUpdate:
        return error_response(unavailable("too many concurrent changes to this user: retry"))
    except HashingBusy:
        return error_response(unavailable("too many logins at once: retry in a second"))
    except ViewsBehind as e:
        # The command is saved; what it changed cannot be shown yet, and a stale answer
        # would contradict it (SPEC 4: 503, never a stale answer).
        return error_response(unavailable(
            f"your change was saved, but the views are behind (not caught up within "
            f"{e.waited_seconds:g} s): read it again shortly", retry_after=2))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "validation_error" if e.status < 500 else "internal")
        message = "body larger than 64 KiB" if e.status == 413 else e.reason
        allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        return error_response(ApiError(e.status, code, message, allow))
    except Exception as e:
        if is_outage(e):  # the store is away or too slow: logged once by the store guard
            log.debug("store unavailable on %s %s: %s", request.method, request.path, e)
            return error_response(unavailable("the store is unavailable: retry shortly",
                                              retry_after=2))
        # Log the traceback, never the request body (it may hold a password or a code).
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error"))
