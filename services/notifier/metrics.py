"""The notifier's Prometheus metrics, read from its objects when scraped (README "What to
watch"): open sockets, bus messages handled, pushes to pages, pages closed at a session's end."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.notifier.live_sessions import LiveSessions
from services.notifier.notices import Notifier


class NotifierMetrics(Collector):
    def __init__(self, live: LiveSessions, notifier: Notifier) -> None:
        self.live = live
        self.notifier = notifier

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("mfa_notifier_open_websockets",
                                "Pages with an open /ws socket on this notifier.",
                                value=self.live.count())
        messages = CounterMetricFamily("mfa_notifier_messages",
                                       "Bus messages received, by result: handled, duplicate "
                                       "(already seen: at-least-once delivery).",
                                       labels=["result"])
        messages.add_metric(["handled"], self.notifier.handled)
        messages.add_metric(["duplicate"], self.notifier.duplicates)
        yield messages
        pushes = CounterMetricFamily("mfa_notifier_pushes",
                                     "Messages sent to open pages, by kind: banner, notice.",
                                     labels=["kind"])
        for kind, count in self.notifier.pushed.items():
            pushes.add_metric([kind], count)
        yield pushes
        yield CounterMetricFamily("mfa_notifier_pages_closed",
                                  "Pages closed because their session ended (SessionEnded "
                                  "messages: logout, a new login).", value=self.notifier.closed)
