"""The MFA service's Prometheus metrics, `mfa_*`, in the registry of its process (or app).

README "What to watch" says what each means for an operator and which alerts to set.

- Counted where they happen: the outcomes of the password step and of the second factor, the
  lockouts those failures start (`password_step`, `second_factor`: the HTTP handlers run the
  use case inside them), and the SessionEnded messages for the notifiers.
- Read when scraped, from the objects that keep them: the log followers' positions and lags
  (`LogFollowers`: the views and the relay this process runs), the relay's confirmed and failed
  publishes, the group commit's transactions and saves. Lags need the store: `sample()` reads
  the log's head and the oldest event each follower has not applied yet, before each scrape.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.mfa.adapters.passwords import HashingBusy
from services.mfa.domain.errors import InvalidCode, InvalidCredentials, LockedOut, PasskeyCloned

if TYPE_CHECKING:
    from services.mfa.bootstrap import Service
    from services.mfa.log_follower import LogFollower

log = logging.getLogger(__name__)


class MfaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.second_factors = Counter(
            "mfa_second_factor_verifications",
            "Second factors at login (step 2) by outcome (accepted, rejected, throttled: 429) "
            "and factor (totp, recovery_code).", ["outcome", "factor"], registry=registry)
        self.password_steps = Counter(
            "mfa_password_steps",
            "Password steps (login, re-authentication) by outcome: right, wrong, throttled "
            "(429), busy (503: the hashing capacity was full).", ["outcome"], registry=registry)
        self.lockouts = Counter(
            "mfa_lockouts_started",
            "Failures that started a wait (429 until it ends), by factor: second_factor "
            "(per account), password (the closest password limit).", ["factor"],
            registry=registry)
        self.sessions_ended = Counter(
            "mfa_session_ended_messages",
            "SessionEnded messages for the notifiers (logout, new login) by result: "
            "published, failed (the notifiers' periodic check closes the pages instead).",
            ["result"], registry=registry)
        # Every series from zero, so a rate is defined before the first event.
        for outcome in ("accepted", "rejected", "throttled"):
            for factor in ("totp", "recovery_code", "passkey"):
                self.second_factors.labels(outcome, factor)
        for outcome in ("right", "wrong", "throttled", "busy"):
            self.password_steps.labels(outcome)
        for factor in ("second_factor", "password"):
            self.lockouts.labels(factor)
        for result in ("published", "failed"):
            self.sessions_ended.labels(result)
        self.followers: LogFollowers | None = None

    @contextlib.contextmanager
    def password_step(self) -> Iterator[None]:
        try:
            yield
        except InvalidCredentials as error:
            self.password_steps.labels("wrong").inc()
            if error.locked_until is not None:
                self.lockouts.labels("password").inc()
            raise
        except LockedOut:
            self.password_steps.labels("throttled").inc()
            raise
        except HashingBusy:
            self.password_steps.labels("busy").inc()
            raise
        else:
            self.password_steps.labels("right").inc()

    @contextlib.contextmanager
    def second_factor(self, factor: str) -> Iterator[None]:
        """`factor`: what the user gave (`totp`, `recovery_code`; a new factor is a new
        label value)."""
        try:
            yield
        except InvalidCode as error:
            self.second_factors.labels("rejected", factor).inc()
            if error.locked_until is not None:
                self.lockouts.labels("second_factor").inc()
            raise
        except PasskeyCloned:
            self.second_factors.labels("rejected", factor).inc()
            raise
        except LockedOut:
            self.second_factors.labels("throttled", factor).inc()
            raise
        else:
            self.second_factors.labels("accepted", factor).inc()

    def watch(self, service: Service, views: Sequence[LogFollower],
              relay: LogFollower | None) -> None:
        """Reports the followers this process runs, and the service's own counters (again:
        replaces what an earlier call reported)."""
        if self.followers is not None:
            self.registry.unregister(self.followers)
        self.followers = LogFollowers(service, views, relay)
        self.registry.register(self.followers)

    async def sample(self) -> None:
        """Before a scrape: what the lags need from the store."""
        if self.followers is not None:
            await self.followers.sample()


class LogFollowers(Collector):
    def __init__(self, service: Service, views: Sequence[LogFollower],
                 relay: LogFollower | None) -> None:
        self.service = service
        self.views = list(views)
        self.relay = relay
        self.head: int | None = None
        self.ages: dict[int, float] = {}  # position -> age of the next event, seconds

    async def sample(self) -> None:
        if not self.views and self.relay is None:
            return  # `mfa api`: no lag of its own to report
        service = self.service
        try:
            head = await service.call(service.app.recorder.max_notification_id) or 0
            now = service.clock.now()
            ages: dict[int, float] = {}
            for follower in [*self.views, *([self.relay] if self.relay else [])]:
                position = follower.position
                if position < head and position not in ages:
                    ages[position] = await self._age(position, now)
        except Exception as e:  # the store is away: the lags are unknown, not zero
            log.warning("metrics: the log's head is not readable (%s)", type(e).__name__)
            self.head, self.ages = None, {}
            return
        self.head, self.ages = head, ages

    async def _age(self, position: int, now: datetime) -> float:
        """How long the oldest event after `position` has waited (0 if there is none)."""
        app = self.service.app
        notifications = await self.service.call(lambda: app.recorder.select_notifications(
            start=position, limit=1, inclusive_of_start=False))
        if not notifications:
            return 0.0
        event: Any = app.mapper.to_domain_event(notifications[0])
        return max(0.0, (now - event.timestamp).total_seconds())

    def collect(self) -> Iterable[Metric]:
        if self.views or self.relay:
            yield from self._positions()
            failing = GaugeMetricFamily(
                "mfa_follower_failing", "1 while a view or the relay of this process is "
                "stopped on a failure (it retries; mfa projections status names it).",
                labels=["follower"])
            for follower in [*self.views, *([self.relay] if self.relay else [])]:
                failing.add_metric([follower.name],
                                   int(getattr(follower, "failure", None) is not None))
            yield failing
        if self.relay is not None:
            yield _counter("mfa_relay_published", "Public events the broker confirmed.",
                           getattr(self.relay, "published", 0))
            yield _counter("mfa_relay_publish_failures",
                           "Batches whose publishing failed (retried from the same position).",
                           getattr(self.relay, "publish_failures", 0))
        group = self.service.app.group_commit
        if group is not None:
            yield _counter("mfa_group_commit_transactions",
                           "Store transactions of the group commit.", group.transactions)
            yield _counter("mfa_group_commit_saves",
                           "Commands saved by the group commit (saves / transactions: how many "
                           "share one).", group.saves)

    def _positions(self) -> Iterable[Metric]:
        head = self.head
        if head is not None:
            yield GaugeMetricFamily("mfa_log_head_position",
                                    "The event log's last position (at the last scrape).",
                                    value=head)
        position = GaugeMetricFamily("mfa_projection_position",
                                     "Last log position each view applied.",
                                     labels=["projection"])
        lag = GaugeMetricFamily("mfa_projection_lag_events",
                                "Log positions each view is behind the head.",
                                labels=["projection"])
        age = GaugeMetricFamily("mfa_projection_lag_seconds",
                                "How long the oldest event a view has not applied has waited "
                                "(0 when it is caught up).", labels=["projection"])
        for view in self.views:
            position.add_metric([view.name], view.position)
            if head is not None:
                lag.add_metric([view.name], max(0, head - view.position))
                age.add_metric([view.name], self.ages.get(view.position, 0.0)
                               if view.position < head else 0.0)
        if self.views:
            yield from (position, lag, age) if head is not None else (position,)
        if self.relay is not None:
            relay = self.relay.position
            yield GaugeMetricFamily("mfa_relay_position",
                                    "Last log position the relay published (broker-confirmed).",
                                    value=relay)
            if head is not None:
                yield GaugeMetricFamily("mfa_relay_lag_events",
                                        "Log positions the relay is behind the head.",
                                        value=max(0, head - relay))
                yield GaugeMetricFamily("mfa_relay_lag_seconds",
                                        "How long the oldest event not yet published has waited.",
                                        value=self.ages.get(relay, 0.0) if relay < head else 0.0)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
