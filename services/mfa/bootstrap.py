"""The composition root of the MFA service: every process is put together here, top to bottom.

1. `build_service`: the adapters on the configured store (SQLite or PostgreSQL) and bus (RabbitMQ
   or in-process), the use cases on them, the views and the relay; `close_service` undoes it.
2. `running`: the background work a process runs (projections, relay, session purge).
3. The processes, each from its settings:
   - `mfa serve` / `mfa api`: `api_service`, the resources of the HTTP app
     (services/mfa/http/app.py `create_app` holds its routes and middlewares): the service, the
     notifier in-process under `mfa serve`, the background work;
   - `mfa projector` / `mfa relay`: `follow`, with /healthz, /readyz and /metrics on
     MFA_HEALTH_PORT;
   - the one-shot commands (`mfa create-org`, `mfa support`, `mfa audit`): `application_only`.
   `mfa notifier` is the notifier's own (services/notifier/main.py).
Each process starts with JSON logs and optional tracing (services/runtime/process.py), and has
a Prometheus registry of its own, kept by the service (`Service.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from prometheus_client import CollectorRegistry

from services.messaging.bus import Bus, InProcessBus, RabbitBus
from services.mfa import readiness
from services.mfa.adapters import sessions as session_tables
from services.mfa.adapters import throttle as throttle_tables
from services.mfa.adapters.database import Database, PostgresDatabase, SqliteDatabase
from services.mfa.adapters.device_cookies import DeviceCookies
from services.mfa.adapters.event_store import StoreLocation, derive_key
from services.mfa.adapters.leadership import Leadership
from services.mfa.adapters.passwords import HashingPool, Passwords
from services.mfa.adapters.sessions import SessionStore
from services.mfa.adapters.store_health import StoreGuard
from services.mfa.adapters.throttle import PasswordThrottle
from services.mfa.application import MfaApplication, Written
from services.mfa.config import Settings
from services.mfa.domain.clock import Clock, SystemClock
from services.mfa.domain.lockout import LockoutPolicy
from services.mfa.log_follower import LogFollower, create_tracking, follow_while_leading
from services.mfa.logins import Logins, PasswordPolicies
from services.mfa.metrics import MfaMetrics
from services.mfa.policy import PolicyEnforcer
from services.mfa.projections import user_state
from services.mfa.projections.audit_log import AuditLogProjection
from services.mfa.projections.runner import (
    Projection,
    ProjectionRunner,
    ViewsBehind,
    ViewsFollower,
    create_tables,
    progress_channel,
)
from services.mfa.projections.user_state import UserStateProjection
from services.mfa.projections.users_grid import UsersGridProjection
from services.mfa.relay import Relay
from services.notifier.live_sessions import LiveSessions
from services.notifier.metrics import NotifierMetrics
from services.notifier.notices import Notifier
from services.notifier.websocket import (
    Authenticate,
    check_sessions_periodically,
    refresh_all,
)
from services.runtime.web import health_routes, health_server, new_registry

log = logging.getLogger(__name__)
T = TypeVar("T")

# Enough threads for the store's pool (5 + 10 on PostgreSQL) without queueing on it.
EXECUTOR_THREADS = 8


@dataclass
class Service:
    settings: Settings
    app: MfaApplication
    db: Database
    sessions: SessionStore
    projections: list[ProjectionRunner]
    views: ViewsFollower
    relay: Relay
    bus: Bus
    executor: ThreadPoolExecutor
    clock: Clock
    hashing: HashingPool
    throttle: PasswordThrottle
    devices: DeviceCookies
    policy: PolicyEnforcer
    metrics: MfaMetrics = field(default_factory=lambda: MfaMetrics(new_registry()))
    store: StoreGuard = field(init=False)
    logins: Logins = field(init=False)
    _user_locks: dict[UUID, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self.store = StoreGuard(s.store_timeout_seconds)
        policies = PasswordPolicies(
            per_client=LockoutPolicy(s.lockout_threshold, s.lockout_base_seconds,
                                     s.lockout_max_seconds),
            per_address=LockoutPolicy(s.password_address_threshold, s.lockout_base_seconds,
                                      s.lockout_max_seconds),
            per_account=LockoutPolicy(s.password_account_threshold, s.lockout_base_seconds,
                                      s.lockout_max_seconds))
        self.logins = Logins(self.app, self.throttle, self.hashing, policies, self.clock,
                             command=self.command, call=self.call)

    async def call(self, fn: Callable[..., T], *args: Any, within: float | None = -1.0) -> T:
        """Runs a synchronous call of the eventsourcing application off the event loop, within
        MFA_STORE_TIMEOUT_SECONDS (`within`: another bound, None for none): past it, or while
        the store is known to be away, StoreUnavailable (503). In this context, so the store
        thread sees the request id (the events record it)."""
        context = contextvars.copy_context()
        return await self.store.call(self.executor, context.run, fn, *args, within=within)

    async def command(self, fn: Callable[..., Written], *args: Any,
                      user_id: UUID | None = None, settle: bool = True) -> Written:
        """Runs a use case, then (unless `settle` is False: nothing the caller reads next
        depends on it) has the views catch up so the caller reads its own write.

        Commands on one user are queued in this process, so they rarely lose the optimistic
        concurrency race; across processes that race (and its retry) still decides.
        """
        lock = self._lock_for(user_id) if user_id is not None else contextlib.nullcontext()
        try:
            async with lock:
                written = await self.call(fn, *args)
        finally:
            for follower in self.followers:
                follower.kick()
        if settle:
            await self.settle(written.position)
        return written

    async def settle(self, position: int) -> None:
        """Waits until every view applied `position`; ViewsBehind (503) if one has not within
        MFA_VIEWS_WAIT_SECONDS: the caller would read the state before its own write."""
        if not position:
            return
        wait = self.settings.views_wait_seconds
        applied = await asyncio.gather(*(runner.wait_for(position, wait)
                                         for runner in self.projections))
        if not all(applied):
            raise ViewsBehind(position, wait, [runner.name for runner, done
                                               in zip(self.projections, applied, strict=True)
                                               if not done])

    async def two_factor(self, user_id: UUID) -> dict[str, Any]:
        """The user's 2FA state as shown (GET /api/me, pages, sockets): the per-user view, or
        the aggregate itself while the view has not applied the user's creation yet."""
        state = await user_state.read(self.db, user_id)
        if state is None:
            mfa = await self.call(self.app.mfa, user_id)
            state = mfa.shown_state()
        return state.to_json()

    @property
    def followers(self) -> list[LogFollower]:
        return [self.views, self.relay, self.policy]

    def _lock_for(self, user_id: UUID) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            if len(self._user_locks) > 10_000:  # forget idle users' locks
                for key in [k for k, v in self._user_locks.items() if not v.locked()]:
                    del self._user_locks[key]
            lock = self._user_locks[user_id] = asyncio.Lock()
        return lock


async def connect_bus(settings: Settings) -> Bus:
    """RabbitMQ when MFA_AMQP_URL is set, else the in-process bus of the embedded deployment."""
    if settings.amqp_url:
        return await RabbitBus(settings.amqp_url, settings.amqp_exchange).connect()
    return InProcessBus()


async def build_service(settings: Settings, *, clock: Clock | None = None,
                        passwords: Passwords | None = None, bus: Bus | None = None,
                        command_timeout: float | None = 30.0,
                        registry: CollectorRegistry | None = None) -> Service:
    """`command_timeout` bounds each read-side statement (None: no bound, for maintenance);
    `registry`: the process's (or the app's) Prometheus registry, new if not given."""
    clock = clock or SystemClock()
    location = StoreLocation.parse(settings.database_url)
    executor = ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="mfa-store")
    loop = asyncio.get_running_loop()
    lockout = LockoutPolicy(settings.lockout_threshold, settings.lockout_base_seconds,
                            settings.lockout_max_seconds)
    env = location.eventsourcing_env(settings.secret_key, settings.store_timeout_seconds)
    projections: list[Projection] = [UserStateProjection(), UsersGridProjection(),
                                     AuditLogProjection()]
    db: Database
    async with _schema_lock(location):
        # Construction runs DDL and may hash the decoy password: off the event loop.
        app = await loop.run_in_executor(executor, lambda: MfaApplication(
            env, clock=clock, lockout=lockout, issuer=settings.issuer, group_commit=True))
        if location.kind == "sqlite":
            db = SqliteDatabase(location.sqlite_path)
        else:
            db = await PostgresDatabase.connect(
                host=location.host, port=location.port, user=location.user,
                password=location.password, dbname=location.dbname, schema=location.schema,
                timeout_seconds=settings.store_timeout_seconds,
                command_timeout=command_timeout)
        await session_tables.create_schema(db)
        for sql in throttle_tables.SCHEMA:
            await db.execute(sql)
        await create_tables(db, projections)
        await create_tracking(db, [Relay.name, PolicyEnforcer.name])
    runners = [ProjectionRunner(app, db, projection) for projection in projections]
    views = ViewsFollower(runners)
    bus = bus or await connect_bus(settings)
    relay = Relay(app, db, bus)
    policy = PolicyEnforcer(app, db, views)
    for follower in [*runners, relay, policy]:
        await follower.load_position()
    sessions = SessionStore(db, derive_key(settings.secret_key, "sessions"),
                            settings.session_max_age_seconds, settings.session_idle_seconds)
    # Constructing Passwords hashes the decoy: off the event loop.
    if passwords is None:
        passwords = await loop.run_in_executor(executor, Passwords)
    hashing = HashingPool(passwords, settings.hashing_threads, settings.hashing_queue)
    throttle = PasswordThrottle(db, derive_key(settings.secret_key, "throttle"),
                                settings.throttle_forget_seconds)
    devices = DeviceCookies(derive_key(settings.secret_key, "device-cookies"),
                            settings.device_cookie_max_age_seconds)
    return Service(settings, app, db, sessions, runners, views, relay, bus,
                   executor, clock, hashing, throttle, devices, policy,
                   MfaMetrics(registry or new_registry()))


@contextlib.asynccontextmanager
async def _schema_lock(location: StoreLocation) -> AsyncIterator[None]:
    """Processes starting together on a fresh PostgreSQL database would run the same
    CREATE ... IF NOT EXISTS at once, which PostgreSQL can fail on its catalog's unique index:
    one process at a time creates the tables, under an advisory lock."""
    if location.kind != "postgres":
        yield
        return
    conn = await asyncpg.connect(host=location.host, port=location.port, user=location.user,
                                 password=location.password or None, database=location.dbname)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))",
                           f"mfa-service schema {location.schema}")
        yield
    finally:
        await conn.close()  # ends the session, which releases the lock


async def close_service(service: Service) -> None:
    try:
        await service.bus.close()
    finally:
        # Commands still running in the store threads finish before the store closes under
        # them; then each store is closed even if another one failed to.
        service.executor.shutdown(wait=True, cancel_futures=True)
        service.hashing.close()
        try:
            await service.db.close()
        finally:
            service.app.close()


SESSION_PURGE_SECONDS = 3600


async def purge_sessions(service: Service) -> None:
    """Expired sessions and forgotten throttle counters are ignored anyway; this only keeps
    the tables small."""
    while True:
        try:
            await service.sessions.purge_expired(service.clock.now())
            await service.throttle.purge(service.clock.now())
        except Exception:
            log.exception("purging expired sessions failed; next try in an hour")
        await asyncio.sleep(SESSION_PURGE_SECONDS)


@contextlib.asynccontextmanager
async def running(service: Service, *, projections: bool = False, relay: bool = False,
                  sessions: bool = False) -> AsyncIterator[None]:
    """Background work in this process: projectors and relay (woken by every command here, by
    PostgreSQL's NOTIFY for other processes' events, else by polling), and the session purge.

    On PostgreSQL the relay runs only while this process leads (an advisory lock, see
    adapters/leadership.py): one relay publishes at a time, the others stand by. An API
    process that does not run the views listens to their announcements instead, so a command
    waits for its views without polling (a slow poll stays as a fallback)."""
    # The policy enforcer runs with the views: it reads the users grid.
    followers: list[LogFollower] = [service.views, service.policy] if projections else []
    if relay:
        followers.append(service.relay)
    service.metrics.watch(service, service.projections if projections else [],
                          service.relay if relay else None)
    db = service.db
    leadership = Leadership(db, "relay") if relay and isinstance(db, PostgresDatabase) else None
    runs = [asyncio.create_task(
        follow_while_leading(f, leadership) if f is service.relay and leadership else f.run(),
        name=f"follow-{f.name}") for f in followers]
    if relay and isinstance(service.bus, RabbitBus):
        # The broker is back: publish now, not after the relay's grown pause.
        async def broker_back() -> None:
            service.relay.resume()

        service.bus.on_reconnect(broker_back)
    tasks = [asyncio.create_task(purge_sessions(service), name="session-purge")] if sessions else []
    async with contextlib.AsyncExitStack() as stack:
        if followers and isinstance(db, PostgresDatabase):
            # Other processes' events wake the followers at once (the store NOTIFYs per insert);
            # a (re)connected listener means the store is back: retry now.
            def wake(payload: str | None) -> None:
                for follower in followers:
                    if payload is None:
                        follower.resume()
                    else:
                        follower.kick()

            channel = service.app.recorder.channel_name  # type: ignore[attr-defined]
            await stack.enter_async_context(db.listening(channel, wake))
        progress = progress_channel(db)
        if not projections and progress is not None and isinstance(db, PostgresDatabase) \
                and service.projections:
            runners = {runner.name: runner for runner in service.projections}

            def advanced(payload: str | None) -> None:
                name, _, position = (payload or "").rpartition(":")
                if name in runners and position.isdigit():
                    runners[name].seen_at(int(position))

            for runner in service.projections:
                runner.poll_seconds = 0.5  # announcements come; the table is the fallback
            await stack.enter_async_context(db.listening(progress, advanced))
        try:
            yield
        finally:
            if leadership is not None:
                leadership.stop()
            for follower in followers:
                follower.stop()
            for task in tasks:
                task.cancel()
            for task in [*runs, *tasks]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


# ---- the processes ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_service(settings: Settings, *, embedded: bool, registry: CollectorRegistry,
                      live: LiveSessions, authenticate: Authenticate,
                      clock: Clock | None = None, passwords: Passwords | None = None,
                      bus: Bus | None = None) -> AsyncIterator[Service]:
    """What the HTTP app of `mfa serve` (`embedded`) or `mfa api` runs while it serves: the
    service, and under `mfa serve` the notifier (`live`: the sockets of its `/ws`) and the
    projections and relay too; under `mfa api` only the session purge."""
    service = await build_service(settings, clock=clock, passwords=passwords, bus=bus,
                                  registry=registry)
    try:
        if embedded:
            async with embedded_notifier(service, live, authenticate), \
                    running(service, projections=True, relay=True, sessions=True):
                yield service
        else:
            async with running(service, sessions=True):
                yield service
    finally:
        await close_service(service)


@contextlib.asynccontextmanager
async def embedded_notifier(service: Service, live: LiveSessions,
                            authenticate: Authenticate) -> AsyncIterator[Notifier]:
    """The notifier inside `mfa serve`, on the service's own bus; `authenticate` checks a
    socket's session against the session store directly (services/mfa/http/live.py)."""
    notifier = Notifier(live)
    collector = NotifierMetrics(live, notifier)
    service.metrics.registry.register(collector)
    await service.bus.subscribe(notifier.handle)
    if isinstance(service.bus, RabbitBus):
        service.bus.on_reconnect(lambda: refresh_all(live, authenticate))
    checks = asyncio.create_task(check_sessions_periodically(
        live, authenticate, service.settings.socket_check_seconds))
    try:
        yield notifier
    finally:
        checks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checks
        await live.close_all()
        service.metrics.registry.unregister(collector)


PROJECTOR_HEALTH_PORT, RELAY_HEALTH_PORT = 8090, 8091


async def follow(settings: Settings, *, projections: bool, relay: bool) -> int:
    """`mfa projector` / `mfa relay`: follow the log until SIGTERM or SIGINT, answering
    /healthz, /readyz and /metrics on MFA_HEALTH_PORT (by default 8090 for the projector, 8091
    for the relay)."""
    registry = new_registry()
    service = await build_service(settings, registry=registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for follower in service.followers:
        follower.idle_poll_seconds = 0.1  # other processes write: poll the log often
    what = "projections" if projections else "relay"
    port = settings.health_port or (PROJECTOR_HEALTH_PORT if projections else RELAY_HEALTH_PORT)
    routes = health_routes(lambda _: readiness.checks(service, bus=relay), lambda _: registry,
                           refresh=lambda _: service.metrics.sample())
    try:
        async with running(service, projections=projections, relay=relay), \
                health_server(settings.host, port, routes, registry):
            log.info("mfa %s following the event log; health on http://%s:%d", what,
                     settings.host, port)
            print(f"mfa {what} following the event log", flush=True)
            await stop.wait()
    finally:
        await close_service(service)
    print(f"mfa {what} stopped", flush=True)
    return 0


def application_only(settings: Settings) -> MfaApplication:
    """The event-sourced application alone: what the support and audit commands need (no
    views, no bus: a running projector and relay pick their events up from the log)."""
    return MfaApplication(StoreLocation.parse(settings.database_url).eventsourcing_env(
        settings.secret_key), issuer=settings.issuer)
