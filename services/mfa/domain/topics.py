"""The names aggregates and events are stored under (their topics), and their versions.

Every stored record names the class that decodes it: its topic. The library's default topic is
the class's path (`module:QualName`), which ties every stored history to where the code lives:
move a module or rename a class and the old records no longer resolve. Here each stored class
carries its topic (`TOPIC`) and is registered under it when its module is imported
(`eventsourcing.utils.register_topic`), so the class may move or be renamed while the records,
old and new, keep naming it the same way (the library's `get_topic` answers a class's TOPIC).

The topics are the paths the classes had when the log began, e.g.
`services.mfa.domain.mfa:MFA.TotpAccepted`: every stored record already carries them, and a
process of the previous release reading the same store (a rolling deploy, a rollback) resolves
them as paths. They are names now, not paths: never change one. To also read records written
under another topic, register it for the class as well (`register_topic(old, cls)`); to write a
new topic, first release code that reads it, then code that writes it.

Each stored class also has a `class_version` (1 today). A change of what an event or an
aggregate holds raises it and adds a static method `upcast_v1_v2(state)` (then `upcast_v2_v3`,
...) that turns an older record's state into the new one: the library applies them as it
decodes, to events (`Mapper.to_domain_event`) and to snapshots (`Snapshot.mutate`).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, CanMutateAggregate, ProgrammingError
from eventsourcing.utils import get_topic, register_topic

_DECLARED: dict[str, type[Aggregate]] = {}


def stored_as(aggregate: type[Aggregate], topic: str) -> None:
    """Stores `aggregate` under `topic` and registers it and each of its events under their
    topics; refuses a stored class without a topic or a version. Called right below the class.

    The aggregate's TOPIC is set here rather than in its body: given in the body, eventsourcing
    9.5.6 also demands a topic of the `Created` class it generates for every aggregate, which
    ours never use (their created events have names of their own, e.g. MfaCreated), and the
    library's own `@event(name, topic=...)` on `__init__` fails the same way. Set now, TOPIC
    does all it does in the library: `get_topic` answers it (snapshots, created events), and
    `trigger_event` and `_create` refuse an event class whose topic is not registered."""
    setattr(aggregate, "TOPIC", topic)  # noqa: B010 (after the class exists: see above)
    _check_version(aggregate)
    register_topic(topic, aggregate)
    for event_class in event_classes(aggregate):
        event_topic = getattr(event_class, "TOPIC", None)
        if not event_topic:
            raise ProgrammingError(f"{event_class.__qualname__}: no TOPIC (its stored name)")
        _check_version(event_class)
        register_topic(event_topic, event_class)
    if get_topic(aggregate) != topic:
        raise ProgrammingError(f"{aggregate.__qualname__} was named before it was stored_as")
    _DECLARED[topic] = aggregate


def event_classes(aggregate: type[Aggregate]) -> list[type[CanMutateAggregate[Any]]]:
    """The stored event classes of `aggregate`: not its base `Event`, nor the `Created` class
    the library generates and nothing triggers (that one has no topic; a `Created` of our own
    without one is still refused, when triggered)."""
    return [value for name, value in vars(aggregate).items()
            if isinstance(value, type) and issubclass(value, CanMutateAggregate)
            and name != "Event" and (name != "Created" or getattr(value, "TOPIC", None))]


def declared() -> dict[str, type[Aggregate]]:
    """Every stored aggregate class by its topic (those whose modules were imported)."""
    return dict(_DECLARED)


def _check_version(cls: type) -> None:
    if not isinstance(getattr(cls, "class_version", None), int):
        raise ProgrammingError(f"{cls.__qualname__}: no class_version")
