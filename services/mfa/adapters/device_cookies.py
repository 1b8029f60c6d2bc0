"""Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device Cookies").

A browser that completed a login gets a signed cookie naming that login's email (by HMAC only:
the cookie does not show it). Its later password attempts for that email are counted under the
cookie, not under the counters a stranger's guesses fill, so nobody without the password can keep
a returning user out. The cookie authenticates nothing by itself: the password is still checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

COOKIE = "mfa_device"
_VERSION = "d1"


class DeviceCookies:
    def __init__(self, key: bytes, max_age_seconds: int) -> None:
        self._key = key
        self.max_age = max_age_seconds

    def binding(self, email: str) -> str:
        """What a device cookie is bound to: the normalized email's HMAC (kept in the login
        session, so the cookie can be issued after the second factor without reading the
        account, and no email sits in the sessions table)."""
        return hmac.new(self._key, f"email|{email}".encode(), hashlib.sha256).hexdigest()[:32]

    def _sign(self, nonce: str, issued: int, binding: str) -> str:
        mac = hmac.new(self._key, f"{_VERSION}|{nonce}|{issued}|{binding}".encode(),
                       hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")

    def issue(self, binding: str, now: datetime) -> str:
        nonce = secrets.token_urlsafe(16)
        issued = int(now.timestamp())
        return f"{_VERSION}.{nonce}.{issued}.{self._sign(nonce, issued, binding)}"

    def nonce_for(self, cookie: str | None, email: str, now: datetime) -> str | None:
        """The cookie's nonce if it is one of ours, for this email, and not too old."""
        if not cookie or len(cookie) > 200 or not cookie.isascii():
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        _, nonce, issued_text, signature = parts
        issued = int(issued_text)
        if not 0 <= now.timestamp() - issued < self.max_age:
            return None
        if not hmac.compare_digest(signature, self._sign(nonce, issued, self.binding(email))):
            return None
        return nonce
