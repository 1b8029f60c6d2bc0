"""TOTP of RFC 6238 as the product issues it: SHA1, 6 digits, 30 s steps, 160-bit secrets.

A code is accepted for the current step and one step either side (clock drift, RFC 6238 section 6),
and only for a step later than the last one accepted (RFC 6238 section 5.2: a verifier must not
accept a code twice). The ±1 window gives a code a lifetime of about 90 s: this meets RFC 6238 and
NIST SP 800-63B (lifetime = drift + delay + entry) but not a literal reading of ASVS 5.0 6.5.5
(30 s); we follow the RFC and NIST, as documented in the README.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from urllib.parse import quote

import pyotp

DIGITS = 6
PERIOD_SECONDS = 30
DRIFT_STEPS = 1
SECRET_LENGTH = 32  # base32 characters: 160 bits, as RFC 4226 R6 recommends


def new_secret() -> str:
    """A fresh base32 secret from the `secrets` module (pyotp.random_base32 uses it)."""
    return pyotp.random_base32(length=SECRET_LENGTH)


def step_at(when: datetime) -> int:
    return int(when.timestamp()) // PERIOD_SECONDS


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, now: datetime, after_step: int) -> int | None:
    """The latest step within the drift window whose code is `code`, if later than
    `after_step`.

    Every candidate is compared in constant time and none is skipped early, so the time taken
    does not tell which step (if any) matched.
    """
    current = step_at(now)
    matched: int | None = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Bytes: compare_digest refuses non-ASCII str, and a code is a client's input.
        same = hmac.compare_digest(code_for_step(secret, step).encode(), code.encode())
        if same and step > after_step:
            # The latest of the matching steps: when two steps of the window share a code,
            # consuming the earlier one would let the same code in again for the later.
            matched = step if matched is None else max(matched, step)
    return matched


def setup_key(secret: str) -> str:
    """The secret as people type it: base32 in groups of four."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The otpauth:// key URI (Google Authenticator key-uri format), all parameters explicit.

    The label is `ISSUER:ACCOUNT`, each part percent-encoded with nothing left safe, so a `/` or
    `:` inside the issuer or the email cannot change the label's structure.
    """
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='@')}"
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer, safe='')}"
        f"&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}"
    )
