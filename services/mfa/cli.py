"""The `mfa` command (SPEC section 4, command line): reads the settings, starts the process's
logs, and hands over to what the command runs, as the composition root (bootstrap.py) puts
it together."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import orjson
from aiohttp import web

from services.messaging.bus import InProcessBus
from services.mfa.adapters.passwords import Passwords
from services.mfa.application import MfaApplication, actor
from services.mfa.audit import history
from services.mfa.bootstrap import application_only, build_service, close_service, follow
from services.mfa.config import ConfigError, Settings
from services.mfa.domain.errors import AccountNotFound, EmailAlreadyUsed
from services.mfa.http.app import create_app
from services.mfa.http.audit import parse_instant
from services.mfa.http.errors import ApiError
from services.mfa.projections.runner import rebuild_all
from services.notifier import main as notifier
from services.runtime import process

DEMO_ORGANIZATION = "Demo Organization"
DEMO_LOGINS = (
    # email, name, role, password
    ("admin@demo.example", "Ada Admin", "admin", "demo-admin-password"),
    ("client@demo.example", "Carl Client", "client", "demo-client-password"),
)


def _demo(app: MfaApplication) -> None:
    """Creates the demo organization once; later starts find it and only print the logins."""
    (admin_email, admin_name, _, admin_password), *clients = DEMO_LOGINS
    try:
        app.user_id_for(admin_email)
        return
    except AccountNotFound:
        pass
    passwords = Passwords()
    try:
        org_id, _ = app.create_organization(DEMO_ORGANIZATION, admin_email, admin_name,
                                            passwords.hash(admin_password),
                                            actor("system", "demo")).value
    except EmailAlreadyUsed:
        return  # another instance starting at the same time made it
    for email, name, role, password in clients:
        app.create_user(org_id, email, name, role, passwords.hash(password), False,
                        actor("system", "demo"))


def _create_org(settings: Settings, name: str, admin_email: str, admin_name: str,
                admin_password: str, operator: str) -> int:
    app = application_only(settings)
    try:
        org_id, _ = app.create_organization(name, admin_email, admin_name,
                                            Passwords().hash(admin_password),
                                            actor("support", operator)).value
    except EmailAlreadyUsed:
        print(f"mfa: {admin_email} already has an account", file=sys.stderr)
        return 1
    finally:
        app.close()
    print(org_id)
    return 0


def _reset_two_factor(settings: Settings, email: str, operator: str) -> int:
    app = application_only(settings)
    try:
        app.support_reset(email, operator)
    except AccountNotFound:
        print(f"mfa: no account with email {email}", file=sys.stderr)
        return 1
    finally:
        app.close()
    print(f"2FA of {email} reset by support:{operator}")
    return 0


def _export(settings: Settings, org: str | None, since: str | None) -> int:
    try:
        org_id = UUID(org) if org else None
        since_at = parse_instant(since, datetime.now(tz=UTC)) if since else None
    except (ValueError, ApiError):
        print("mfa: --org takes an organization id, --since an ISO 8601 time", file=sys.stderr)
        return 2
    app = application_only(settings)
    try:
        out = sys.stdout.buffer
        for record in history(app, org_id=org_id, since=since_at):
            out.write(orjson.dumps(record) + b"\n")
        out.flush()
    except BrokenPipeError:  # `mfa audit export | head` is fine
        pass
    finally:
        app.close()
    return 0


async def _rebuild(settings: Settings) -> int:
    service = await build_service(settings, bus=InProcessBus(), command_timeout=None)
    started = last_report = time.monotonic()

    def progress(total: int, position: int) -> None:
        nonlocal last_report
        if time.monotonic() - last_report > 1:
            last_report = time.monotonic()
            print(f"  {total:,} events replayed, position {position}", flush=True)

    try:
        total = await rebuild_all(service.projections, progress=progress)
    finally:
        await close_service(service)
    seconds = max(time.monotonic() - started, 1e-9)
    names = ", ".join(runner.name for runner in service.projections)
    print(f"rebuilt {names} from {total:,} events in {seconds:.2f} s "
          f"({total / seconds:,.0f} events/s)", flush=True)
    return 0


async def _status(settings: Settings) -> int:
    """`mfa projections status`: each view's (and the relay's) position, its lag behind the
    log's head, and the failure it is stopped on, if any. Exit status 1 when one is stopped."""
    service = await build_service(settings, bus=InProcessBus())
    try:
        head = await service.call(service.app.recorder.max_notification_id) or 0
        names = [runner.name for runner in service.projections] + [service.relay.name]
        rows = {row["projection"]: int(row["position"]) for row in await service.db.fetch(
            "SELECT projection, position FROM mfa_tracking")}
        failures = {row["follower"]: row for row in await service.db.fetch(
            "SELECT follower, position, event_type, error, since FROM mfa_follower_failures")}
    finally:
        await close_service(service)
    print(f"log head: {head}")
    print(f"{'follower':<12} {'position':>10} {'lag':>8}  last error")
    for name in names:
        position = rows.get(name, 0)
        failure = failures.get(name)
        if failure is None:
            error = "-"
        else:
            since = datetime.fromtimestamp(failure["since"], tz=UTC).isoformat(timespec="seconds")
            what = f"{failure['event_type']} at position {failure['position']}" \
                if failure["event_type"] else f"before position {failure['position']}"
            error = f"stopped since {since} on {what}: {failure['error']}"
        print(f"{name:<12} {position:>10} {head - position:>8}  {error}")
    return 1 if failures else 0


def _serve(settings: Settings, *, embedded: bool = True) -> int:
    app = create_app(settings, embedded=embedded)

    async def announce(app: web.Application) -> None:
        from services.mfa.http.context import SERVICE

        service = app[SERVICE]
        if settings.demo:
            await service.call(_demo, service.app, within=None)  # hashes: not a store wait
        print(f"MFA service listening on http://{settings.host}:{settings.port}", flush=True)
        if settings.demo:
            print("Demo organization logins:", flush=True)
            for email, _, role, password in DEMO_LOGINS:
                print(f"  {role:<6} {email}  password: {password}", flush=True)

    app.on_startup.append(announce)
    # One JSON access line per request comes from services/runtime/web.py, with its request id.
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfa", description="The MFA (2FA) service.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="all components in one process (embedded by default)")
    commands.add_parser("api", help="the HTTP API alone (platform deployment)")
    commands.add_parser("projector", help="the projections alone (platform deployment)")
    commands.add_parser("relay", help="the relay to RabbitMQ alone (platform deployment)")
    commands.add_parser("notifier", help="the live-banner notifier alone (platform deployment)")
    org = commands.add_parser("create-org", help="create an organization and its first admin")
    org.add_argument("--name", required=True)
    org.add_argument("--admin-email", required=True)
    org.add_argument("--admin-password", required=True)
    org.add_argument("--admin-name", default="Administrator")
    audit = commands.add_parser("audit", help="the event history")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="the history as JSON Lines on stdout")
    export.add_argument("--org", help="only this organization's events")
    export.add_argument("--since", help="only events at or after this ISO 8601 time")
    projections = commands.add_parser("projections", help="the read models")
    projections_commands = projections.add_subparsers(dest="projections_command", required=True)
    projections_commands.add_parser("rebuild", help="empty every view and replay the log")
    projections_commands.add_parser(
        "status", help="each view's position, lag behind the log and last error")
    support = commands.add_parser("support", help="platform support operations")
    support_commands = support.add_subparsers(dest="support_command", required=True)
    reset = support_commands.add_parser("reset-2fa", help="reset a user's 2FA (F10)")
    reset.add_argument("--email", required=True)
    for sub in (org, reset):
        sub.add_argument("--operator", default=getpass.getuser(),
                         help="who runs this, recorded as the actor (default: the OS user)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "notifier":
        return notifier.main()  # its own settings: it needs none of the service's
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"mfa: {e}", file=sys.stderr)
        return 2
    process.start(f"mfa-{args.command}", settings.log_level)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "api":
        return _serve(settings, embedded=False)
    if args.command in ("projector", "relay"):
        return asyncio.run(follow(settings, projections=args.command == "projector",
                                  relay=args.command == "relay"))
    if args.command == "audit":
        return _export(settings, args.org, args.since)
    if args.command == "projections":
        if args.projections_command == "status":
            return asyncio.run(_status(settings))
        return asyncio.run(_rebuild(settings))
    if args.command == "create-org":
        if len(args.admin_password) < 8:
            print("mfa: --admin-password needs at least 8 characters", file=sys.stderr)
            return 2
        return _create_org(settings, args.name, args.admin_email, args.admin_name,
                           args.admin_password, args.operator)
    return _reset_two_factor(settings, args.email, args.operator)


if __name__ == "__main__":
    sys.exit(main())
