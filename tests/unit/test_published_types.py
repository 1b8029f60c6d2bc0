"""The public contract maps stored events explicitly (issue 9): every stored event class is
either published under a public type of `contracts/events.py` or declared private, so an event
added without that decision fails here; and the public type never comes from a class's name."""

from __future__ import annotations

from collections import Counter

from eventsourcing.utils import get_topic

from contracts.events import PUBLIC_DATA
from services.mfa.domain.topics import declared, event_classes
from services.mfa.public_events import PRIVATE, PUBLISHED, event_type, is_public
from tests.golden.replay import HERE, Golden, in_memory


def stored_event_classes() -> set[type]:
    return {cls for aggregate in declared().values() for cls in event_classes(aggregate)}


def test_every_stored_event_class_is_published_or_private() -> None:
    assert not set(PUBLISHED) & PRIVATE
    assert set(PUBLISHED) | PRIVATE == stored_event_classes()


def test_each_public_type_is_published_by_one_stored_class() -> None:
    counts = Counter(PUBLISHED.values())
    assert set(counts) == set(PUBLIC_DATA)
    assert set(counts.values()) == {1}


def test_the_public_type_goes_by_the_stored_topic() -> None:
    """What decides is the topic a record is stored under, not the class it decodes into."""
    golden = Golden(HERE / "v1")
    app = in_memory(golden)
    try:
        for record in golden.events:
            event = app.mapper.to_domain_event(record)
            classes = [cls for cls in PUBLISHED if get_topic(cls) == record.topic]
            assert is_public(event) == bool(classes)
            if classes:
                assert event_type(event) == PUBLISHED[classes[0]]
    finally:
        app.close()
