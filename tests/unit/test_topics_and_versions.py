"""Events are a stored contract (issue 9): every stored class is stored under a topic that is a
name, not a path, and has a class version; a renamed class still replays a stored history, and
an older record is upcast by the library as it is decoded (events and snapshots alike). The
stored history is the committed golden one (tests/golden/)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, ProgrammingError
from eventsourcing.utils import get_topic, resolve_topic

import services.mfa.application  # noqa: F401 (imports every aggregate of the service)
from services.mfa.domain.mfa import MFA, UserEvent
from services.mfa.domain.topics import declared, event_classes, stored_as
from services.mfa.public_events import AUDIT_FIELDS, is_public, to_audit
from tests.golden.replay import HERE, Golden, aggregate_state, from_events, in_memory, versions
from tests.unit.support import new_mfa, topics_resolving_to

GOLDEN = Golden(HERE / "v1")


def subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


# ---- every stored class is named and versioned -------------------------------------------------


def test_every_aggregate_of_the_service_is_stored_under_a_topic() -> None:
    ours = {cls for cls in subclasses(Aggregate) if cls.__module__.startswith("services.")}
    assert ours == set(declared().values())


def test_every_stored_class_resolves_from_its_topic_and_has_a_version() -> None:
    for topic, aggregate in declared().items():
        assert resolve_topic(topic) is aggregate
        assert get_topic(aggregate) == topic
        assert_upcasters(aggregate)
        for event_class in event_classes(aggregate):
            assert resolve_topic(get_topic(event_class)) is event_class
            assert_upcasters(event_class)


def assert_upcasters(cls: type) -> None:
    """A class at version n can read every older record: upcast_v1_v2 ... upcast_v(n-1)_vn."""
    version = getattr(cls, "class_version", None)
    assert isinstance(version, int) and version >= 1, cls
    for old in range(1, version):
        assert callable(getattr(cls, f"upcast_v{old}_v{old + 1}", None)), (cls, old)


def test_the_topics_are_those_of_the_golden_logs() -> None:
    """Each event type is in a golden log (a new one needs a new golden version), and each
    topic a golden log holds is one today's classes are stored under."""
    logged = {r.topic for version in versions() for r in Golden(HERE / version).events}
    assert logged == {get_topic(event_class) for aggregate in declared().values()
                      for event_class in event_classes(aggregate)}


def test_a_stored_class_needs_a_topic_and_a_version() -> None:
    class Draft(Aggregate):
        class_version = 1

        class Opened(Aggregate.Created):
            TOPIC = "tests.unit:Draft.Opened"
            class_version = 1

        class Edited(Aggregate.Event):
            class_version = 1

    with pytest.raises(ProgrammingError, match="Edited: no TOPIC"):
        stored_as(Draft, "tests.unit:Draft")

    class Memo(Aggregate):
        class Written(Aggregate.Created):
            TOPIC = "tests.unit:Memo.Written"
            class_version = 1

    with pytest.raises(ProgrammingError, match="Memo: no class_version"):
        stored_as(Memo, "tests.unit:Memo")


def test_an_event_class_with_no_stored_topic_cannot_be_recorded(clock: Any) -> None:
    class Stray(UserEvent):
        def apply(self, mfa: MFA) -> None:
            pass

    mfa = new_mfa(clock)
    with pytest.raises(ProgrammingError):
        mfa.trigger_event(Stray, user_id=mfa.user_id, org_id=mfa.org_id, actor="system")


# ---- a class renamed and moved -----------------------------------------------------------------


class TotpUsed(UserEvent):
    """MFA.TotpAccepted renamed, and moved into this module: it keeps the topic its records
    carry, which is all a stored history needs."""

    TOPIC = "services.mfa.domain.mfa:MFA.TotpAccepted"
    class_version = 1

    step: int
    address: str | None = None

    def apply(self, mfa: MFA) -> None:
        mfa.last_step = self.step
        mfa.failures = 0
        mfa.locked_until = None


def test_a_renamed_event_class_still_replays_the_stored_history() -> None:
    expected = GOLDEN.expected_aggregates()
    with topics_resolving_to({TotpUsed.TOPIC: TotpUsed}):
        app = in_memory(GOLDEN)
        try:
            renamed = [e for i in expected for e in app.events.get(UUID(i))
                       if isinstance(e, TotpUsed)]
            assert len(renamed) == sum(r.topic == TotpUsed.TOPIC for r in GOLDEN.events) > 0
            for aggregate_id, state in expected.items():
                replayed = from_events(app, UUID(aggregate_id))
                assert aggregate_state(replayed) == state, aggregate_id
        finally:
            app.close()


def test_a_renamed_event_class_publishes_the_same_public_events() -> None:
    committed = [{key: message[key] for key in AUDIT_FIELDS}
                 for message in GOLDEN.expected_lines("public_events.jsonl")]
    with topics_resolving_to({TotpUsed.TOPIC: TotpUsed}):
        app = in_memory(GOLDEN)
        try:
            events = [(app.mapper.to_domain_event(r), p)
                      for r, p in zip(GOLDEN.events, GOLDEN.positions, strict=True)]
        finally:
            app.close()
        assert any(isinstance(event, TotpUsed) for event, _ in events)
        assert [to_audit(e, p) for e, p in events if is_public(e)] == committed


# ---- upcasting: a test-only version 2 read from version 1 records ------------------------------


class TotpAcceptedV2(UserEvent):
    """What a version 2 of MFA.TotpAccepted could be: it also says which authenticator gave the
    code. Every version 1 record came from the one authenticator app."""

    TOPIC = "services.mfa.domain.mfa:MFA.TotpAccepted"
    class_version = 2

    step: int
    authenticator: str
    address: str | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["authenticator"] = "app"

    def apply(self, mfa: MFA) -> None:
        mfa.last_step = self.step


def test_a_version_1_event_is_upcast_as_it_is_decoded() -> None:
    records = [r for r in GOLDEN.events if r.topic == TotpAcceptedV2.TOPIC]
    app = in_memory(GOLDEN)
    try:
        before = [app.mapper.to_domain_event(r) for r in records]
        with topics_resolving_to({TotpAcceptedV2.TOPIC: TotpAcceptedV2}):
            after = [app.mapper.to_domain_event(r) for r in records]
            assert all(isinstance(e, TotpAcceptedV2) for e in after)
            assert {e.authenticator for e in after} == {"app"}  # type: ignore[attr-defined]
            assert [_fields(e, "authenticator") for e in after] == [_fields(e) for e in before]

            # A version 2 record says so, and is not upcast again.
            new = TotpAcceptedV2(originator_id=uuid4(), originator_version=7,
                                 timestamp=datetime.now().astimezone(), user_id=uuid4(),
                                 org_id=uuid4(), actor="user:x", step=9, authenticator="key")
            again = app.mapper.to_domain_event(app.mapper.to_stored_event(new))
            assert again.authenticator == "key"  # type: ignore[attr-defined]
    finally:
        app.close()


def _fields(event: Any, *leaving_out: str) -> dict[str, Any]:
    return {k: v for k, v in vars(event).items() if k not in leaving_out}


class MfaV2(Aggregate):
    """What a version 2 of the MFA aggregate could be: it also remembers the devices a user
    trusts. A version 1 snapshot trusted none."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["trusted_devices"] = []


def snapshot_of(app: Any, record: Any) -> Any:
    return app.mapper.to_domain_event(record).mutate(None)


def test_a_version_1_snapshot_is_upcast_as_it_is_decoded() -> None:
    app = in_memory(GOLDEN)
    try:
        (record,) = GOLDEN.snapshots
        # Today's MFA is version 3 (passkeys, then who requires 2FA): the version 1 snapshot
        # is upcast by its own upcasters, and holds no key.
        today = snapshot_of(app, record)
        assert isinstance(today, MFA) and MFA.class_version == 3
        assert today.passkeys == {} and today.required_by is None
        with topics_resolving_to({get_topic(MFA): MfaV2}):
            v2 = snapshot_of(app, record)
        assert isinstance(v2, MfaV2)
        assert v2.trusted_devices == []
        assert _fields(v2, "trusted_devices") == _fields(today, "passkeys", "required_by")
    finally:
        app.close()


def test_events_stored_before_request_ids_decode_without_one() -> None:
    """`request_id` came after v1: an optional field with a default, so the v1 records decode
    as they are (no upcast, no new class version) and say None; a new record keeps its id."""
    app = in_memory(GOLDEN)
    try:
        old = [app.mapper.to_domain_event(record) for record in GOLDEN.events]
        assert old and all(getattr(event, "request_id", "missing") is None for event in old)
        assert not any("request_id" in vars(event) for event in old)
        new = MFA.TotpAccepted(originator_id=uuid4(), originator_version=3,
                               timestamp=datetime.now().astimezone(), user_id=uuid4(),
                               org_id=uuid4(), actor="user:x", step=9, request_id="req-1")
        again = app.mapper.to_domain_event(app.mapper.to_stored_event(new))
        assert again.request_id == "req-1"  # type: ignore[attr-defined]
    finally:
        app.close()
