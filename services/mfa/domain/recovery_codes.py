"""Recovery codes: 10 one-time codes of 8 digits, drawn from `secrets`."""

from __future__ import annotations

import hmac
import secrets

COUNT = 10
DIGITS = 8


def new_set() -> list[str]:
    codes: set[str] = set()
    while len(codes) < COUNT:  # distinct, so "which one was used" is unambiguous
        codes.add(f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}")
    return sorted(codes)


def find_unused(codes: list[str], used: list[bool], code: str) -> int | None:
    """Index of the unused code equal to `code`; every code is compared, in constant time."""
    found: int | None = None
    for index, candidate in enumerate(codes):
        if hmac.compare_digest(candidate.encode(), code.encode()) and not used[index]:
            found = index
    return found
