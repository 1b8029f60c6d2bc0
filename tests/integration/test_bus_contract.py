"""SPEC section 5: the published event contract. The JSON Schema and the AsyncAPI document agree
with `contracts/events.py`, and every message the relay publishes for a mixed workload validates
against the schema and carries no secret, code, password or hash (in-process bus, both stores;
tests/integration/test_rabbitmq.py does the same through the real broker)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from contracts.events import (
    DEFAULT_EXCHANGE,
    EVENT_TYPES,
    PUBLIC_DATA,
    SCHEMA_VERSION,
    SESSION_ENDED,
    BusMessage,
    PublicEvent,
    UserState,
    routing_key,
)
from services.messaging.bus import InProcessBus, encode
from services.mfa.bootstrap import Service
from services.mfa.log_follower import create_tracking
from services.mfa.public_events import event_type, is_public, next_state
from services.mfa.relay import Relay
from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor, totp_code
from tests.integration.flows import wrong_code
from tests.integration.test_passkeys import add_key, sign_in
from tests.passkey_device import SoftKey

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
SCHEMA_PATH = CONTRACTS / "schemas" / "event.schema.json"
ASYNCAPI_PATH = CONTRACTS / "asyncapi.yaml"
NewBrowser = Callable[[], Awaitable[Api]]


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def session_ended_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACTS / "schemas" / "session-ended.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_valid(message: Any) -> None:
    errors = sorted(validator().iter_errors(message), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors) + \
        f"\nin {message}"


def data_schema(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """The `data` schema the document applies to messages of type `kind`."""
    for clause in schema["allOf"]:
        if clause["if"]["properties"]["type"].get("const") == kind:
            ref: str = clause["then"]["properties"]["data"]["$ref"]
            assert ref.startswith("#/$defs/"), ref
            found: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
            return found
    raise AssertionError(f"no data schema for {kind}")


def sample(kind: str = "RequirementSet", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "0d4c4e4e-6d65-5d8f-9a57-0a1f3b0b6a11",
        "version": SCHEMA_VERSION,
        "type": kind,
        "position": 42,
        "user_id": "6f1c8a52-2b8e-4a53-a4f7-9d1a3c0e2b55",
        "org_id": "a3e5a8c6-9f3e-4c1b-8a60-2f3d4e5f6a7b",
        "actor": "admin:5b2f6c1e-0a1b-4c2d-9e3f-4a5b6c7d8e9f",
        "occurred_at": "2026-11-28T10:00:05.000000+00:00",
        "data": {"required": True, "reason": "admin"},
        "state": {"status": "off", "required": True},
    }
    event.update(changes)
    return event


# ---- the documents ---------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert_valid(sample())


def test_schema_matches_the_python_contract_exactly() -> None:
    schema = load_schema()
    assert set(schema["required"]) == set(PublicEvent.__annotations__)
    assert set(schema["properties"]) == set(PublicEvent.__annotations__)
    assert schema["additionalProperties"] is False
    assert tuple(schema["properties"]["type"]["enum"]) == EVENT_TYPES
    assert schema["properties"]["version"]["const"] == SCHEMA_VERSION
    state = schema["$defs"]["UserState"]
    assert set(state["properties"]) == set(state["required"]) == set(UserState.__annotations__)
    assert state["properties"]["status"]["enum"] == ["on", "off"]
    assert state["additionalProperties"] is False
    covered = [clause["if"]["properties"]["type"]["const"] for clause in schema["allOf"]]
    assert sorted(covered) == sorted(EVENT_TYPES), "one if/then clause per event type"
    for kind, fields in PUBLIC_DATA.items():
        data = data_schema(schema, kind)
        assert data["type"] == "object", kind
        assert data["additionalProperties"] is False, kind
        assert set(data.get("properties", {})) == set(fields), kind
        assert set(data.get("required", [])) == set(fields), kind


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_no_extra_field_can_ever_validate(kind: str) -> None:
    """A secret smuggled into any type's data, or next to it, is invalid."""
    for leak in ("secret", "code", "password", "password_hash", "recovery_codes"):
        event = sample(kind, data={"required": True, leak: "JBSWY3DPEHPK3PXP"})
        assert not validator().is_valid(event), (kind, leak)
        assert not validator().is_valid(sample(**{leak: "$argon2id$v=19$..."})), leak


def test_schema_refuses_malformed_messages() -> None:
    assert not validator().is_valid(sample(type="PasswordChanged"))
    assert not validator().is_valid(sample(state={"status": "maybe", "required": True}))
    assert not validator().is_valid(sample(state={"status": "on"}))
    assert not validator().is_valid(sample(data={"required": "yes"}))
    assert not validator().is_valid(sample(data={}))
    assert not validator().is_valid(sample(version=2))
    assert not validator().is_valid(sample(position=0))
    assert not validator().is_valid(sample(id="not-a-uuid"))
    assert not validator().is_valid({k: v for k, v in sample().items() if k != "org_id"})
    assert validator().is_valid(sample(state=None))
    org = sample("OrganizationCreated", user_id=None, state=None, data={"name": "Acme"})
    assert validator().is_valid(org)


def test_asyncapi_document_describes_the_bus() -> None:
    doc = yaml.safe_load(ASYNCAPI_PATH.read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert "MFA_AMQP_EXCHANGE" in doc["info"]["description"]
    for guarantee in ("at least once", "ordered per user", "deduplicate by id"):
        assert guarantee in doc["info"]["description"].lower(), guarantee
    components = doc["components"]
    exchange = components["channelBindings"]["exchange"]["amqp"]
    assert exchange["is"] == "routingKey"
    assert exchange["exchange"]["name"] == DEFAULT_EXCHANGE
    assert exchange["exchange"]["type"] == "topic"
    assert exchange["exchange"]["durable"] is True
    headers = components["schemas"]["Headers"]
    assert headers["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    trait = components["messageTraits"]["mfaEvent"]
    assert trait["correlationId"]["location"] == "$message.payload#/id"

    channels = doc["channels"]
    assert sorted(c["address"] for c in channels.values()) == \
        sorted(routing_key(kind) for kind in EVENT_TYPES)
    sends = {op["channel"]["$ref"]: op for op in doc["operations"].values()
             if op["action"] == "send"}
    assert len(sends) == len(EVENT_TYPES)
    for name, channel in channels.items():
        (kind,) = channel["messages"]
        assert channel["address"] == routing_key(kind)
        assert channel["bindings"]["$ref"] == "#/components/channelBindings/exchange"
        assert f"#/channels/{name}" in sends, f"no send operation for {name}"
        message = components["messages"][kind]
        assert channel["messages"][kind]["$ref"] == f"#/components/messages/{kind}"
        payload = message["payload"]
        assert payload["schemaFormat"].startswith("application/schema+json")
        refs = [part.get("$ref") for part in payload["schema"]["allOf"]]
        assert "./schemas/event.schema.json" in refs
        assert {"properties": {"type": {"const": kind}}} in payload["schema"]["allOf"]
        assert message["bindings"]["amqp"]["messageType"] == kind
        assert message["traits"] == [{"$ref": "#/components/messageTraits/mfaEvent"}]
    _assert_local_refs_resolve(doc, doc)


def _assert_local_refs_resolve(doc: dict[str, Any], node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = doc
            for part in ref[2:].split("/"):
                assert isinstance(target, dict) and part in target, f"dangling {ref}"
                target = target[part]
        elif isinstance(ref, str):
            assert (ASYNCAPI_PATH.parent / ref).is_file(), f"dangling {ref}"
        for value in node.values():
            _assert_local_refs_resolve(doc, value)
    elif isinstance(node, list):
        for value in node:
            _assert_local_refs_resolve(doc, value)


def test_routing_keys_and_amqp_properties() -> None:
    assert routing_key("RequirementSet") == "mfa.requirement_set"
    assert routing_key("TotpConfirmed") == "mfa.totp_confirmed"
    assert routing_key("OrganizationCreated") == "mfa.organization_created"
    assert all(routing_key(kind).startswith("mfa.") for kind in EVENT_TYPES)
    event: Any = sample()
    message = encode(event)
    assert message.message_id == event["id"]
    assert message.type == "RequirementSet"
    assert message.headers == {"schema_version": SCHEMA_VERSION}
    assert encode(event, "req-1").headers == {"schema_version": SCHEMA_VERSION,
                                               "request_id": "req-1"}
    assert message.content_type == "application/json"
    assert message.delivery_mode is not None and message.delivery_mode.value == 2
    assert orjson.loads(message.body) == event


# ---- what the relay publishes ------------------------------------------------------------------


@dataclass
class Secrets:
    """Everything that must never reach the bus."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)

    def add_setup_key(self, setup_key: str) -> None:
        self.add(setup_key, setup_key.replace(" ", ""))

    def leaks(self, message: PublicEvent | dict[str, Any]) -> list[str]:
        text = orjson.dumps(message).decode()
        found = [value for value in self.values if value in text]
        if "$argon2" in text:
            found.append("$argon2")
        return found


async def mixed_workload(admin: Api, new_browser: NewBrowser, clock: FrozenClock,
                         org: Org, lockout_threshold: int) -> Secrets:
    """Every kind of event: users, 2FA setup, logins with TOTP and recovery codes, wrong
    codes and passwords, a lockout, regeneration, requirement, reset and disable."""
    secrets = Secrets()
    secrets.add(org.admin_password)

    # A: configures 2FA, logs in with TOTP (after a wrong code) and with a recovery code,
    # regenerates the codes; then the admin renames and requires them, and resets their 2FA.
    alice = await create_user(admin, password="alice-password-1")
    secrets.add(alice["password"])
    browser = await new_browser()
    assert await browser.login(alice["email"], alice["password"]) == "done"
    key, codes = await enable_two_factor(browser, alice["password"], clock)
    secrets.add_setup_key(key)
    secrets.add(*codes)
    await browser.post("/api/logout")
    clock.advance(30)
    assert await browser.login(alice["email"], alice["password"]) == "second_factor"
    status, _ = await browser.post("/api/login/second-factor", {"code": wrong_code(key, clock)})
    assert status == 401
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock)})
    assert status == 200, body
    await browser.post("/api/logout")
    assert await browser.login(alice["email"], alice["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": codes[0]})
    assert status == 200, body
    status, body = await browser.post("/api/me/reauthenticate", {"password": alice["password"]})
    assert status == 200, body
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert status == 200, body
    secrets.add(*body["recovery_codes"])
    status, body = await admin.patch(f"/api/admin/users/{alice['user_id']}",
                                     {"name": "Alice Renamed", "two_factor_required": True})
    assert status == 200, body
    status, body = await admin.post(f"/api/admin/users/{alice['user_id']}/2fa/reset")
    assert status == 200, body

    # B: required from the start, configures 2FA in the forced setup, then disables it after
    # the admin lifts the requirement.
    bob = await create_user(admin, required=True, password="bob-password-123")
    secrets.add(bob["password"])
    bob_browser = await new_browser()
    assert await bob_browser.login(bob["email"], bob["password"]) == "setup_2fa"
    status, setup = await bob_browser.post("/api/me/2fa/setup")
    assert status == 200, setup
    secrets.add_setup_key(setup["setup_key"])
    status, body = await bob_browser.post("/api/me/2fa/setup/verify",
                                          {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200, body
    secrets.add(*body["recovery_codes"])
    status, body = await admin.patch(f"/api/admin/users/{bob['user_id']}",
                                     {"two_factor_required": False, "role": "admin"})
    assert status == 200, body
    status, body = await bob_browser.post("/api/me/reauthenticate",
                                          {"password": bob["password"]})
    assert status == 200, body
    status, body = await bob_browser.post("/api/me/2fa/disable")
    assert status == 200, body

    # C: a wrong password; then, with 2FA on, wrong codes until locked out, and a throttled
    # attempt (wrong passwords are throttled outside the log, by address and email).
    carol = await create_user(admin, password="carol-password-1")
    secrets.add(carol["password"])
    carol_browser = await new_browser()
    status, _ = await carol_browser.post("/api/login", {"email": carol["email"],
                                                        "password": "wrong-password-1"})
    assert status == 401
    assert await carol_browser.login(carol["email"], carol["password"]) == "done"
    key, codes = await enable_two_factor(carol_browser, carol["password"], clock)
    secrets.add_setup_key(key)
    secrets.add(*codes)
    await carol_browser.post("/api/logout")
    clock.advance(30)
    assert await carol_browser.login(carol["email"], carol["password"]) == "second_factor"
    for _ in range(lockout_threshold):
        status, _ = await carol_browser.post("/api/login/second-factor",
                                             {"code": wrong_code(key, clock)})
        assert status == 401
    status, _ = await carol_browser.post("/api/login/second-factor",
                                         {"code": totp_code(key, clock)})
    assert status == 429

    # D: a security key as the first factor, a login with it, a rename, a copy refused, and
    # the key removed (2FA Off again).
    dora = await create_user(admin, password="dora-password-1")
    secrets.add(dora["password"])
    dora_browser = await new_browser()
    await dora_browser.login(dora["email"], dora["password"])
    soft_key = SoftKey()
    added = await add_key(dora_browser, soft_key, password=dora["password"])
    secrets.add(*added["recovery_codes"])
    await dora_browser.post("/api/logout")
    copy = soft_key.clone()
    assert await dora_browser.login(dora["email"], dora["password"]) == "second_factor"
    assert (await sign_in(dora_browser, soft_key))[0] == 200
    key_id = added["passkey"]["id"]
    assert (await dora_browser.patch(f"/api/me/passkeys/{key_id}", {"name": "Mine"}))[0] == 200
    thief = await new_browser()
    assert await thief.login(dora["email"], dora["password"]) == "second_factor"
    assert (await sign_in(thief, copy))[0] == 401
    assert (await dora_browser.post("/api/me/reauthenticate",
                                    {"password": dora["password"]}))[0] == 200
    assert (await dora_browser.call("DELETE", f"/api/me/passkeys/{key_id}", {}))[0] == 200

    # E: the organization requires 2FA for new users (a policy event), then no more.
    for require_new in (True, False):
        status, _ = await admin.call("PUT", "/api/admin/policy",
                                     {"require_all": False, "require_new": require_new})
        assert status == 200
    return secrets


def max_position(service: Service) -> int:
    return service.app.recorder.max_notification_id() or 0


async def settled(service: Service, relay: Relay | None = None) -> int:
    """Waits until the relay (the service's own by default) handled the whole log."""
    relay = relay or service.relay
    head = await service.call(max_position, service)
    async with asyncio.timeout(10):
        while relay.position < head:
            relay.kick()
            await asyncio.sleep(0.05)
    return head


async def caught_up(service: Service) -> None:
    """Teardown hygiene: every follower handled the whole log before the server closes."""
    head = await service.call(max_position, service)
    for follower in service.followers:
        assert await follower.wait_for(head), follower.name


def public_log(service: Service) -> list[tuple[int, str, Any]]:
    """(position, type, domain event) of every public event of the log, in order."""
    found = []
    start = 0
    while notifications := service.app.recorder.select_notifications(
            start=start, limit=500, inclusive_of_start=False):
        for notification in notifications:
            event = service.app.mapper.to_domain_event(notification)
            if is_public(event):
                found.append((notification.id, event_type(event), event))
        start = notifications[-1].id
    return found


async def test_relayed_workload_follows_the_contract(
        service: Service, admin: Api, org: Org, new_browser: NewBrowser,
        clock: FrozenClock) -> None:
    messages: list[PublicEvent] = []
    sessions_ended: list[Any] = []

    async def collect(message: BusMessage) -> None:
        # The API's own SessionEnded notices (logouts) share the bus; they are not log events.
        if message["type"] == SESSION_ENDED:
            sessions_ended.append(message)
        else:
            messages.append(message)  # type: ignore[arg-type]

    # The embedded service relays onto its in-process bus; a second bus and relay replay the
    # log from the start (a relay that was behind), so the organization's events are seen too.
    await service.bus.subscribe(collect)
    secrets = await mixed_workload(admin, new_browser, clock, org,
                                   service.settings.lockout_threshold)
    await settled(service)

    replayed: list[PublicEvent] = []
    replay = await replaying_relay(service, replayed)
    await replay.catch_up()

    log = await service.call(public_log, service)
    for batch in (messages, replayed):
        for message in batch:
            assert_valid(message)
            assert not secrets.leaks(message), (secrets.leaks(message), message)
        positions = [m["position"] for m in batch]
        assert positions == sorted(set(positions)), "positions strictly increase"
        assert {m["type"] for m in batch} <= {kind for _, kind, _ in log}
        ids = [m["id"] for m in batch]
        assert len(ids) == len(set(ids)), "one id per event"

    assert sessions_ended, "the workload logs out"
    for ended in sessions_ended:
        assert not list(session_ended_validator().iter_errors(ended)), ended
        assert not secrets.leaks(ended)
    assert [(p, kind) for p, kind, _ in log] == [(m["position"], m["type"]) for m in replayed]
    first = messages[0]["position"]  # the organization's may have gone out before subscribe
    assert [m["position"] for m in messages] == [p for p, _, _ in log if p >= first]
    assert {kind for _, kind, _ in log} == set(EVENT_TYPES), "the workload makes every type"
    assert {m["type"] for m in replayed} == set(EVENT_TYPES)
    by_id = {m["id"]: m for m in replayed}
    for message in messages:  # the live relay and a late one publish each event the same way
        assert message == by_id[message["id"]]
    await caught_up(service)


async def replaying_relay(service: Service, into: list[PublicEvent],
                          name: str = "contract_probe") -> Relay:
    """Another relay with its own tracked position (0) and in-process bus."""
    bus = InProcessBus()

    async def collect(event: PublicEvent) -> None:
        into.append(event)

    await bus.subscribe(collect)

    class ProbeRelay(Relay):
        pass

    ProbeRelay.name = name
    await create_tracking(service.db, [name])
    relay = ProbeRelay(service.app, service.db, bus)
    await relay.load_position()
    return relay


def expected_states(log: list[tuple[int, str, Any]]) -> dict[int, UserState | None]:
    """Each public event's position -> the user's 2FA state right after it, from the log."""
    states: dict[Any, UserState | None] = {}
    after: dict[int, UserState | None] = {}
    for position, _, event in log:
        user_id = getattr(event, "user_id", None)
        if user_id is None:
            after[position] = None
            continue
        states[user_id] = next_state(states.get(user_id), event)
        after[position] = states[user_id]
    return after


async def test_a_restarted_relay_publishes_the_state_right_after_each_event(
        service: Service, admin: Api, org: Org, clock: FrozenClock) -> None:
    """A relay resuming mid-log (restart, kill -9) publishes the same `state` as one that never
    stopped: the user's state right after each event, never a later one."""
    user = await create_user(admin)
    status, _ = await admin.patch(f"/api/admin/users/{user['user_id']}", {"name": "Renamed"})
    assert status == 200
    renamed_at = await service.call(max_position, service)
    status, _ = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                  {"two_factor_required": True})
    assert status == 200
    await settled(service)

    replayed: list[PublicEvent] = []
    relay = await replaying_relay(service, replayed, name="restart_probe")
    relay.position = renamed_at - 1  # as if it had stopped just before the rename
    await relay.db.execute("UPDATE mfa_tracking SET position = ? WHERE projection = ?",
                           relay.position, relay.name)
    await relay.catch_up()
    log = await service.call(public_log, service)
    expected = expected_states(log)
    renamed = next(m for m in replayed if m["type"] == "ProfileChanged")
    assert renamed["state"] == {"status": "off", "required": False}
    for message in replayed:
        if message["type"] != "AccountCreated":
            assert message["state"] == expected[message["position"]], message
    await caught_up(service)
