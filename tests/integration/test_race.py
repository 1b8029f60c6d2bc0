"""Races (SPEC section 6, replay): one code raced by many requests is accepted exactly once,
through the server (50 browsers) and at the application level without the in-process per-user
lock (optimistic concurrency alone)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.domain.errors import InvalidCode
from services.mfa.domain.mfa import MFA, mfa_id
from tests.conftest import (
    Api,
    FrozenClock,
    create_user,
    enable_two_factor,
    totp_code,
)

BROWSERS = 50
THREADS = 20


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every loser of a race is a wrong (reused) code: keep the lockout out of the way."""
    return settings.model_copy(update={"lockout_threshold": 1000})


def error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


async def user_with_two_factor(admin: Api, new_browser, clock: FrozenClock,
                               ) -> tuple[dict[str, Any], str, list[str]]:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    key, codes = await enable_two_factor(browser, user["password"], clock)
    await browser.post("/api/logout")
    clock.advance(30)  # a fresh step: the setup code's step counts as used
    return user, key, codes


async def race_second_factor(new_browser, user: dict[str, Any], code: str,
                             ) -> tuple[list[Api], list[tuple[int, Any]]]:
    browsers = [await new_browser() for _ in range(BROWSERS)]
    for browser in browsers:
        assert await browser.login(user["email"], user["password"]) == "second_factor"
    results = await asyncio.gather(*(
        browser.post("/api/login/second-factor", {"code": code}) for browser in browsers))
    return browsers, results


def one_winner(browsers: list[Api], results: list[tuple[int, Any]]) -> Api:
    winners = [b for b, (status, _) in zip(browsers, results, strict=True) if status == 200]
    losers = [(status, error_code(body)) for status, body in results if status != 200]
    assert len(winners) == 1, results
    assert losers == [(401, "invalid_code")] * (BROWSERS - 1)
    return winners[0]


async def test_50_browsers_race_one_recovery_code(admin: Api, new_browser, clock: FrozenClock,
                                                  service: Service) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    browsers, results = await race_second_factor(new_browser, user, codes[3])
    winner = one_winner(browsers, results)
    status, me = await winner.get("/api/me")
    assert status == 200, me
    assert me["two_factor"]["recovery_codes_left"] == 9
    for loser in (b for b in browsers if b is not winner):
        status, body = await loser.get("/api/me")
        assert status == 401, body  # still waiting for a second factor
    mfa = await service.call(service.app.mfa, uuid.UUID(user["user_id"]))
    assert mfa.used.count(True) == 1 and mfa.used[mfa.codes.index(codes[3])]


async def test_50_browsers_race_one_totp_code(admin: Api, new_browser, clock: FrozenClock,
                                              service: Service) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browsers, results = await race_second_factor(new_browser, user, totp_code(key, clock))
    winner = one_winner(browsers, results)
    status, me = await winner.get("/api/me")
    assert (status, me["two_factor"]["recovery_codes_left"]) == (200, 10)
    history = await service.call(list, service.app.events.get(mfa_id(uuid.UUID(user["user_id"]))))
    assert sum(isinstance(e, MFA.TotpAccepted) for e in history) == 1


@pytest.mark.parametrize("kind", ["recovery_code", "totp"])
async def test_threads_race_one_code_without_the_per_user_lock(
        admin: Api, new_browser, clock: FrozenClock, service: Service, kind: str) -> None:
    """Straight to the application from 20 threads: only the event store's optimistic
    concurrency (a version conflict, then a retry from a fresh read) stands between them."""
    user, key, codes = await user_with_two_factor(admin, new_browser, clock)
    user_id = uuid.UUID(user["user_id"])
    code = codes[0] if kind == "recovery_code" else totp_code(key, clock)
    start = threading.Barrier(THREADS)

    def attempt() -> str:
        start.wait(timeout=30)
        try:
            service.app.verify_second_factor(user_id, code)
        except InvalidCode:
            return "refused"
        return "accepted"

    def race() -> list[str]:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(attempt) for _ in range(THREADS)]
            return [future.result() for future in futures]

    outcomes = await asyncio.to_thread(race)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * (THREADS - 1)

    history = await service.call(list, service.app.events.get(mfa_id(user_id)))
    accepted = MFA.RecoveryCodeConsumed if kind == "recovery_code" else MFA.TotpAccepted
    assert sum(isinstance(e, accepted) for e in history) == 1
    assert sum(isinstance(e, MFA.SecondFactorRejected) for e in history) == THREADS - 1
    mfa = await service.call(service.app.mfa, user_id)
    assert mfa.recovery_codes_left == (9 if kind == "recovery_code" else 10)
