"""Per-user 2FA state: what `GET /api/me` and the enforcement banner read."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from contracts.shown_state import ShownState
from services.mfa.adapters.database import Database, Statement
from services.mfa.domain.mfa import MFA


class UserStateProjection:
    name = "user_state"
    tables: tuple[str, ...] = ("mfa_user_state",)
    schema = [
        """CREATE TABLE IF NOT EXISTS mfa_user_state (
            user_id text PRIMARY KEY,
            org_id text NOT NULL,
            status text NOT NULL,
            required boolean NOT NULL,
            recovery_codes_left integer NOT NULL,
            locked_until double precision
        )""",
    ]
    postgres_schema: list[str] = []

    @singledispatchmethod
    def statements(self, event: Any, position: int) -> list[Statement]:
        return []

    @statements.register
    def _(self, e: MFA.MfaCreated, position: int) -> list[Statement]:
        return [("INSERT INTO mfa_user_state (user_id, org_id, status, required,"
                 " recovery_codes_left, locked_until) VALUES (?, ?, 'off', ?, 0, NULL)"
                 " ON CONFLICT (user_id) DO UPDATE SET org_id = excluded.org_id,"
                 " status = 'off', required = excluded.required, recovery_codes_left = 0,"
                 " locked_until = NULL",
                 (str(e.user_id), str(e.org_id), e.required))]

    @statements.register
    def _(self, e: MFA.TotpConfirmed, position: int) -> list[Statement]:
        if e.recovery_codes:  # the first factor: codes issued with it
            return [_set(e, "status = 'on', recovery_codes_left = ?", len(e.recovery_codes))]
        return [_set(e, "status = 'on'")]

    @statements.register
    def _(self, e: MFA.PasskeyRegistered, position: int) -> list[Statement]:
        if e.recovery_codes:  # the first factor: codes issued with it
            return [_set(e, "status = 'on', recovery_codes_left = ?", len(e.recovery_codes))]
        return [_set(e, "status = 'on'")]

    @statements.register
    def _(self, e: MFA.PasskeyUsed, position: int) -> list[Statement]:
        return [_unlock(e)]

    @statements.register
    def _(self, e: MFA.PasskeyRemoved, position: int) -> list[Statement]:
        if e.still_on:
            return []
        return [_set(e, "status = 'off', recovery_codes_left = 0")]

    @statements.register
    def _(self, e: MFA.CodesRegenerated, position: int) -> list[Statement]:
        return [_set(e, "recovery_codes_left = ?", len(e.recovery_codes))]

    @statements.register
    def _(self, e: MFA.RecoveryCodeConsumed, position: int) -> list[Statement]:
        return [_set(e, "recovery_codes_left = ?, locked_until = NULL", e.remaining)]

    @statements.register
    def _(self, e: MFA.TotpAccepted, position: int) -> list[Statement]:
        return [_unlock(e)]

    @statements.register
    def _(self, e: MFA.PasswordAccepted, position: int) -> list[Statement]:
        return [_unlock(e)] if e.completes_login else []

    @statements.register
    def _(self, e: MFA.SecondFactorRejected, position: int) -> list[Statement]:
        until = e.locked_until.timestamp() if e.locked_until else None
        return [_set(e, "locked_until = ?", until)]

    @statements.register
    def _(self, e: MFA.RequirementSet, position: int) -> list[Statement]:
        return [_set(e, "required = ?", e.required)]

    @statements.register(MFA.ResetByAdmin)
    @statements.register(MFA.TwoFactorDisabled)
    def _(self, e: MFA.Event, position: int) -> list[Statement]:
        return [_set(e, "status = 'off', recovery_codes_left = 0")]


def _unlock(event: Any) -> Statement:
    """A success clears the lockout; most logins have none, and then no row is rewritten."""
    return ("UPDATE mfa_user_state SET locked_until = NULL"
            " WHERE user_id = ? AND locked_until IS NOT NULL", (str(event.user_id),))


def _set(event: Any, assignments: str, *values: Any) -> Statement:
    return (f"UPDATE mfa_user_state SET {assignments} WHERE user_id = ?",  # noqa: S608
            (*values, str(event.user_id)))


async def read(db: Database, user_id: UUID) -> ShownState | None:
    row = await db.fetchrow(
        "SELECT status, required, recovery_codes_left FROM mfa_user_state WHERE user_id = ?",
        str(user_id))
    if row is None:
        return None
    return ShownState(row["status"], bool(row["required"]), int(row["recovery_codes_left"]))
