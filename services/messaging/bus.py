"""The bus both services use: publish public events, subscribe to them.

`InProcessBus` serves the embedded deployment (one process, no broker). `RabbitBus` is the
platform's: one durable topic exchange, routing keys `mfa.<event>`, persistent JSON messages with
the event id as message id, publisher confirms; each subscriber gets its own exclusive queue bound
to `mfa.#`, so every instance sees every event, and acknowledges a message only after handling it.

Each message may carry the id of the HTTP request that caused it (the `request_id` header, not
the body: it is no part of the published event); a subscriber handles the message with that id
current (services/runtime/request_id.py), so its log lines carry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, cast

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from contracts.events import DEFAULT_EXCHANGE, SCHEMA_VERSION, BusMessage, routing_key
from services.runtime import request_id

log = logging.getLogger(__name__)
Handler = Callable[[BusMessage], Awaitable[None]]


RequestIds = Sequence[str | None] | None


class Bus(Protocol):
    async def publish(self, events: Sequence[BusMessage], request_ids: RequestIds = None) -> None:
        """Returns once every event is safely with the bus (confirmed by the broker).
        `request_ids`: the request that caused each event (None: the current one for all)."""
        ...

    async def subscribe(self, handler: Handler) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class InProcessBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    async def publish(self, events: Sequence[BusMessage], request_ids: RequestIds = None) -> None:
        for event, rid in zip(events, _ids(events, request_ids), strict=True):
            with request_id.bound(rid):
                for handler in self._handlers:
                    try:
                        await handler(event)
                    except Exception:  # one subscriber's fault is not the publisher's
                        log.exception("in-process subscriber failed on %s", event["type"])

    async def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()


def _ids(events: Sequence[BusMessage], request_ids: RequestIds) -> Sequence[str | None]:
    return [request_id.current()] * len(events) if request_ids is None else request_ids


def encode(event: BusMessage, rid: str | None = None) -> aio_pika.Message:
    headers: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if rid is not None:
        headers[request_id.BUS_HEADER] = rid
    return aio_pika.Message(
        body=orjson.dumps(event),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event["id"],
        type=event["type"],
        headers=headers,
    )


def decode(body: bytes) -> BusMessage:
    event: Any = orjson.loads(body)
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise ValueError("not an MFA event")
    return cast("BusMessage", event)


class RabbitBus:
    def __init__(self, url: str, exchange: str = DEFAULT_EXCHANGE,
                 publish_timeout: float = 10.0, prefetch: int = 100) -> None:
        self.url = url
        self.exchange_name = exchange
        self.publish_timeout = publish_timeout
        self.prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def connect(self, max_wait_seconds: float = 30.0) -> RabbitBus:
        """Waits for the broker (a process may start before it), then connects. Once connected,
        connect_robust reconnects by itself and re-declares exchanges, queues and consumers."""
        pause = 0.5
        while True:
            try:
                self._connection = await aio_pika.connect_robust(self.url)
                break
            except (OSError, aio_pika.exceptions.AMQPError) as e:
                log.warning("RabbitMQ not reachable (%s); retrying in %.1f s",
                            type(e).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, max_wait_seconds)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._declare(channel)
        return self

    async def _declare(self, channel: aio_pika.abc.AbstractChannel,
                       ) -> aio_pika.abc.AbstractExchange:
        return await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC,
                                              durable=True)

    async def publish(self, events: Sequence[BusMessage], request_ids: RequestIds = None) -> None:
        """Each user's events are published one after another (the broker keeps their order);
        different users' go out concurrently. Raises if any is not confirmed."""
        assert self._exchange is not None, "connect() first"
        exchange = self._exchange
        by_user: dict[str | None, list[tuple[BusMessage, str | None]]] = defaultdict(list)
        for event, rid in zip(events, _ids(events, request_ids), strict=True):
            by_user[event["user_id"]].append((event, rid))

        async def in_order(chain: list[tuple[BusMessage, str | None]]) -> None:
            for event, rid in chain:
                await exchange.publish(encode(event, rid), routing_key(event["type"]),
                                       mandatory=False, timeout=self.publish_timeout)

        # Every chain ends before a failure is raised: none may still be publishing while the
        # relay retries the batch, or a user's events could overtake each other.
        outcomes = await asyncio.gather(*(in_order(chain) for chain in by_user.values()),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def subscribe(self, handler: Handler) -> None:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await self._declare(channel)
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="mfa.#")

        async def on_message(message: AbstractIncomingMessage) -> None:
            with request_id.bound(request_id.sane(message.headers.get(request_id.BUS_HEADER))):
                await handle(message)

        async def handle(message: AbstractIncomingMessage) -> None:
            try:
                event = decode(message.body)
            except (ValueError, orjson.JSONDecodeError):
                log.warning("dropping a message that is not an MFA event")
                await message.reject(requeue=False)
                return
            try:
                await handler(event)
            except Exception:
                # One more try on redelivery; a message that fails twice is dropped, so a
                # poison message cannot stall the queue.
                log.exception("handling %s failed", event["type"])
                await message.nack(requeue=not message.redelivered)
                return
            await message.ack()

        await queue.consume(on_message)

    def on_reconnect(self, callback: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Runs `callback` after each reconnection: events published while a subscriber's
        queue was gone never reach it, so it may need to catch up by other means."""
        assert self._connection is not None, "connect() first"

        def reconnected(*_: Any) -> None:
            task: asyncio.Task[object] = asyncio.get_running_loop().create_task(callback())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._connection.reconnect_callbacks.add(reconnected)

    async def ping(self) -> None:
        # A robust connection that lost the broker is not closed: it is reconnecting, and
        # until `connected` is set again nothing can be published through it.
        if self._connection is None or self._connection.is_closed \
                or not self._connection.connected.is_set():
            raise ConnectionError("not connected to RabbitMQ")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
