"""Fixtures of the unit tests: a frozen clock and the lockout policy of the SPEC's defaults."""

from __future__ import annotations

import pytest

from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.lockout import LockoutPolicy
from tests.unit.support import START


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def policy() -> LockoutPolicy:
    return LockoutPolicy(threshold=5, base_seconds=30, max_seconds=3600)
