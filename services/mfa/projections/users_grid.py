"""The admin users grid of F8: every user of an organization with 2FA Status and 2FA Required."""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from services.mfa.adapters.database import Database, Statement
from services.mfa.domain.account import Account
from services.mfa.domain.mfa import MFA


class UsersGridProjection:
    name = "users_grid"
    tables: tuple[str, ...] = ("mfa_users_grid",)
    schema = [
        """CREATE TABLE IF NOT EXISTS mfa_users_grid (
            user_id text PRIMARY KEY,
            org_id text NOT NULL,
            email text NOT NULL,
            name text NOT NULL,
            role text NOT NULL,
            status text NOT NULL,
            required boolean NOT NULL
        )""",
        # Keyset pagination in email order, with and without the two filters.
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_org_email ON mfa_users_grid (org_id, email)",
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_org_filters"
        " ON mfa_users_grid (org_id, status, required, email)",
    ]

    @singledispatchmethod
    def statements(self, event: Any, position: int) -> list[Statement]:
        return []

    @statements.register
    def _(self, e: Account.AccountCreated, position: int) -> list[Statement]:
        return [("INSERT INTO mfa_users_grid (user_id, org_id, email, name, role, status,"
                 " required) VALUES (?, ?, ?, ?, ?, 'off', ?) ON CONFLICT (user_id) DO UPDATE"
                 " SET org_id = excluded.org_id, email = excluded.email, name = excluded.name,"
                 " role = excluded.role, status = 'off', required = excluded.required",
                 (str(e.user_id), str(e.org_id), e.email, e.name, e.role, False))]

    @statements.register
    def _(self, e: Account.ProfileChanged, position: int) -> list[Statement]:
        return [_set(e, "name = ?, role = ?", e.name, e.role)]

    @statements.register
    def _(self, e: MFA.MfaCreated, position: int) -> list[Statement]:
        return [_set(e, "required = ?", e.required)]

    @statements.register
    def _(self, e: MFA.RequirementSet, position: int) -> list[Statement]:
        return [_set(e, "required = ?", e.required)]

    @statements.register
    def _(self, e: MFA.TotpConfirmed, position: int) -> list[Statement]:
        return [_set(e, "status = 'on'")]

    @statements.register(MFA.ResetByAdmin)
    @statements.register(MFA.TwoFactorDisabled)
    def _(self, e: MFA.Event, position: int) -> list[Statement]:
        return [_set(e, "status = 'off'")]


def _set(event: Any, assignments: str, *values: Any) -> Statement:
    return (f"UPDATE mfa_users_grid SET {assignments} WHERE user_id = ?",  # noqa: S608
            (*values, str(event.user_id)))


@dataclass(frozen=True)
class GridQuery:
    org_id: UUID
    status: str | None = None  # "on" | "off"
    required: bool | None = None
    q: str | None = None  # part of the email or the name
    after: tuple[str, str] | None = None  # keyset cursor: (email, user_id) of the last row
    limit: int = 50


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "two_factor_status": row["status"],
        "two_factor_required": bool(row["required"]),
    }


async def page(db: Database, query: GridQuery) -> tuple[list[dict[str, Any]], bool]:
    """One page in (email, user_id) order, and whether more follow."""
    where = ["org_id = ?"]
    args: list[Any] = [str(query.org_id)]
    if query.status is not None:
        where.append("status = ?")
        args.append(query.status)
    if query.required is not None:
        where.append("required = ?")
        args.append(query.required)
    if query.q:
        pattern = "%" + query.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        where.append("(lower(email) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\')")
        args += [pattern, pattern]
    if query.after is not None:
        where.append("(email > ? OR (email = ? AND user_id > ?))")
        args += [query.after[0], query.after[0], query.after[1]]
    rows = await db.fetch(
        "SELECT user_id, email, name, role, status, required FROM mfa_users_grid"  # noqa: S608
        f" WHERE {' AND '.join(where)} ORDER BY email, user_id LIMIT ?",
        *args, query.limit + 1)
    return [_row(r) for r in rows[: query.limit]], len(rows) > query.limit


async def read(db: Database, org_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT user_id, email, name, role, status, required FROM mfa_users_grid"
        " WHERE user_id = ? AND org_id = ?", str(user_id), str(org_id))
    return _row(row) if row else None


async def counts(db: Database, org_id: UUID) -> dict[str, int]:
    """How many users of the organization have 2FA On, Off, and Required (all filters aside)."""
    row = await db.fetchrow(
        "SELECT count(*) AS total,"
        " sum(CASE WHEN status = 'on' THEN 1 ELSE 0 END) AS on_count,"
        " sum(CASE WHEN required THEN 1 ELSE 0 END) AS required_count"
        " FROM mfa_users_grid WHERE org_id = ?", str(org_id))
    total = int(row["total"]) if row else 0
    on = int(row["on_count"] or 0) if row else 0
    required = int(row["required_count"] or 0) if row else 0
    return {"total": total, "on": on, "off": total - on, "required": required}
