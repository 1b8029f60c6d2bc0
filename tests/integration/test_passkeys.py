"""Security keys and passkeys through the API (issue 11), with a software authenticator (real
P-256 signatures), on both stores: add, log in, fall back to a code, rename, remove; and what an
attacker tries: a replayed answer, another origin, a copied key, a forced setup raced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import orjson
import pytest

from services.mfa.bootstrap import Service
from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor, totp_code
from tests.integration.flows import NewBrowser, error_code, settle_followers
from tests.passkey_device import SoftKey


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


def origin(api: Api) -> str:
    url = api.client.make_url("/")
    return f"http://{url.host}:{url.port}"


async def add_key(api: Api, key: SoftKey, name: str = "YubiKey",
                  password: str | None = None) -> dict[str, Any]:
    if password is not None:
        assert (await api.post("/api/me/reauthenticate", {"password": password}))[0] == 200
    status, body = await api.post("/api/me/passkeys/options")
    assert status == 200, body
    status, body = await api.post("/api/me/passkeys", {
        "name": name, "credential": key.create(body["options"], origin(api))})
    assert status == 201, body
    return dict(body)


async def sign_in(api: Api, key: SoftKey) -> tuple[int, Any]:
    status, body = await api.post("/api/login/passkey/options")
    assert status == 200, body
    return await api.post("/api/login/passkey",
                          {"credential": key.get(body["options"], origin(api))})


async def user_with_key(admin: Api, new_browser: NewBrowser,
                        **kwargs: Any) -> tuple[dict[str, Any], SoftKey, list[str]]:
    user = await create_user(admin, **kwargs)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    key = SoftKey()
    added = await add_key(browser, key, password=user["password"])
    await browser.post("/api/logout")
    return user, key, added["recovery_codes"] or []


async def test_a_key_alone_turns_2fa_on_with_recovery_codes_and_logs_in(
        admin: Api, new_browser: NewBrowser, service: Service) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    # Adding a key needs the password window, like Configure 2FA.
    status, body = await browser.post("/api/me/passkeys/options")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    added = await add_key(browser, SoftKey(), password=user["password"])
    assert added["passkey"]["name"] == "YubiKey" and added["passkey"]["last_used_at"] is None
    assert len(added["recovery_codes"]) == 10  # the first factor of all
    me = (await browser.get("/api/me"))[1]
    assert me["two_factor"] == {"status": "on", "required": False, "recovery_codes_left": 10,
                                "banner": False}
    grid = (await admin.get(f"/api/admin/users/{user['user_id']}"))[1]
    assert grid["two_factor_status"] == "on"
    # A second key issues no new codes.
    second = await add_key(browser, SoftKey(), "Phone")
    assert second["recovery_codes"] is None
    assert [k["name"] for k in (await browser.get("/api/me/passkeys"))[1]["passkeys"]] == [
        "YubiKey", "Phone"]


async def test_login_with_a_key_then_with_a_code_as_a_fallback(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, codes = await user_with_key(admin, new_browser)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    assert await sign_in(browser, key) == (200, {"next": "done"})
    keys = (await browser.get("/api/me/passkeys"))[1]["passkeys"]
    assert keys[0]["last_used_at"] is not None
    # The authenticator app too; then the code works as well as the key.
    setup_key, _ = await enable_two_factor(browser, user["password"], clock)
    await browser.post("/api/logout")
    clock.advance(30)
    fallback = await new_browser()
    assert await fallback.login(user["email"], user["password"]) == "second_factor"
    status, body = await fallback.post("/api/login/second-factor",
                                       {"code": totp_code(setup_key, clock)})
    assert (status, body) == (200, {"next": "done"})
    # And a recovery code of the key's set.
    other = await new_browser()
    assert await other.login(user["email"], user["password"]) == "second_factor"
    assert (await other.post("/api/login/second-factor", {"code": codes[0]}))[0] == 200


async def test_rename_and_remove(admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    first = (await add_key(browser, SoftKey(), password=user["password"]))["passkey"]
    second = (await add_key(browser, SoftKey(), "Phone"))["passkey"]
    status, body = await browser.patch(f"/api/me/passkeys/{first['id']}", {"name": "Work key"})
    assert status == 200 and body["passkey"]["name"] == "Work key"
    status, body = await browser.call("DELETE", f"/api/me/passkeys/{second['id']}", {})
    assert status == 200 and body["two_factor"]["status"] == "on"
    status, body = await browser.call("DELETE", f"/api/me/passkeys/{first['id']}", {})
    assert status == 200 and body["two_factor"]["status"] == "off"  # the last factor went
    status, body = await browser.call("DELETE", f"/api/me/passkeys/{first['id']}", {})
    assert (status, error_code(body)) == (404, "not_found")


async def test_the_last_key_of_a_required_user_cannot_be_removed(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    # A forced setup may use a key as the first factor: it completes the login.
    added = await add_key(browser, SoftKey())
    assert len(added["recovery_codes"]) == 10
    assert (await browser.get("/api/admin/users"))[0] == 403  # done, but not an admin
    status, body = await browser.call("DELETE",
                                      f"/api/me/passkeys/{added['passkey']['id']}", {})
    assert (status, error_code(body)) == (409, "two_factor_required")


async def test_a_copied_key_is_refused_and_reported(admin: Api, new_browser: NewBrowser,
                                                    service: Service) -> None:
    user, key, _ = await user_with_key(admin, new_browser)
    copy = key.clone()
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    assert (await sign_in(browser, key))[0] == 200
    notices: list[Any] = []

    async def collect(message: Any) -> None:
        notices.append(message)

    await service.bus.subscribe(collect)
    thief = await new_browser()
    assert await thief.login(user["email"], user["password"]) == "second_factor"
    status, body = await sign_in(thief, copy)  # same key, a counter already seen
    assert (status, error_code(body)) == (401, "invalid_code")
    assert "copy" in body["error"]["message"]
    await settle_followers(service)
    status, events = await admin.get(f"/api/audit/events?user_id={user['user_id']}&limit=1000")
    kinds = [e["type"] for e in events["events"]]
    assert "PasskeyCloneSuspected" in kinds and kinds[-1] == "SecondFactorRejected"
    # Published (so the mailer and the user's pages can tell them), without key material.
    clone_messages = [m for m in notices if m["type"] == "PasskeyCloneSuspected"]
    assert clone_messages and set(clone_messages[0]["data"]) == {"passkey_id", "address"}


async def test_an_answer_works_once_and_only_for_this_origin(
        admin: Api, new_browser: NewBrowser) -> None:
    user, key, _ = await user_with_key(admin, new_browser)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    status, body = await browser.post("/api/login/passkey/options")
    answer = key.get(body["options"], origin(browser))
    assert (await browser.post("/api/login/passkey", {"credential": answer}))[0] == 200
    replay = await new_browser()
    await replay.login(user["email"], user["password"])
    await replay.post("/api/login/passkey/options")  # a challenge of its own
    status, body = await replay.post("/api/login/passkey", {"credential": answer})
    assert (status, error_code(body)) == (401, "invalid_code")  # signed another challenge
    # A phishing site relaying the ceremony: the browser signs its own origin.
    phished = await new_browser()
    await phished.login(user["email"], user["password"])
    status, body = await phished.post("/api/login/passkey/options")
    answer = key.get(body["options"], "https://mfa-login.example.net")
    status, body = await phished.post("/api/login/passkey", {"credential": answer})
    assert (status, error_code(body)) == (401, "invalid_code")
    # Without options first (or twice for one challenge): nothing to check against.
    status, body = await phished.post("/api/login/passkey", {"credential": answer})
    assert (status, error_code(body)) == (400, "validation_error")


async def test_bad_answers_are_a_clear_4xx(admin: Api, new_browser: NewBrowser) -> None:
    user, _, _ = await user_with_key(admin, new_browser)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    await browser.post("/api/login/passkey/options")
    for bad in ({}, {"credential": "x"}, {"credential": {"id": 5}},
                {"credential": {"id": "!!!"}}):
        status, body = await browser.post("/api/login/passkey", bad)
        assert status == 400 and error_code(body) == "validation_error", (bad, body)
    status, body = await browser.post("/api/login/passkey", {"credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}})
    assert status in (400, 401), body


async def test_admin_reset_and_disable_remove_keys(admin: Api, new_browser: NewBrowser,
                                                   service: Service) -> None:
    user, _, _ = await user_with_key(admin, new_browser)
    status, body = await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    assert status == 200 and body["two_factor_status"] == "off"
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    assert (await browser.get("/api/me/passkeys"))[1]["passkeys"] == []
    await add_key(browser, SoftKey(), password=user["password"])
    assert (await browser.post("/api/me/2fa/disable"))[0] == 200
    assert (await browser.get("/api/me/passkeys"))[1]["passkeys"] == []


async def test_no_key_material_leaves_the_service(admin: Api, new_browser: NewBrowser,
                                                  service: Service, org: Org) -> None:
    user, key, _ = await user_with_key(admin, new_browser)
    mfa = await service.call(service.app.mfa, UUID(user["user_id"]))
    public_key = next(iter(mfa.passkeys.values()))["public_key"]
    _, events = await admin.get(f"/api/audit/events?user_id={user['user_id']}&limit=1000")
    assert public_key not in orjson.dumps(events).decode()
    me = await new_browser()
    await me.login(user["email"], user["password"])
    await sign_in(me, key)
    assert public_key not in orjson.dumps((await me.get("/api/me/passkeys"))[1]).decode()


async def test_recovery_codes_back_up_a_key_alone(admin: Api, new_browser: NewBrowser) -> None:
    """A user whose only factor is a key logs in with a recovery code when the key is lost."""
    user, _, codes = await user_with_key(admin, new_browser)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": codes[0]})
    assert (status, body) == (200, {"next": "done"})
    status, body = await browser.post("/api/login/second-factor", {"code": "123456"})
    assert status in (401, 403)  # no app: a 6-digit code is never right
