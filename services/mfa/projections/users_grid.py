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
    tables: tuple[str, ...] = ("mfa_users_grid", "mfa_users_grid_counts")
    schema = [
        """CREATE TABLE IF NOT EXISTS mfa_users_grid (
            user_id text PRIMARY KEY,
            org_id text NOT NULL,
            email text NOT NULL,
            name text NOT NULL,
            role text NOT NULL,
            status text NOT NULL,
            required boolean NOT NULL,
            required_by text
        )""",
        # Keyset pagination in (email, user_id) order, for no filter, each filter, and both.
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_page"
        " ON mfa_users_grid (org_id, email, user_id)",
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_status"
        " ON mfa_users_grid (org_id, status, email, user_id)",
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_required"
        " ON mfa_users_grid (org_id, required, email, user_id)",
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_both"
        " ON mfa_users_grid (org_id, status, required, email, user_id)",
        # The On/Off/Required counts shown with every page, kept up to date row by row.
        """CREATE TABLE IF NOT EXISTS mfa_users_grid_counts (
            org_id text PRIMARY KEY,
            total bigint NOT NULL,
            on_count bigint NOT NULL,
            required_count bigint NOT NULL
        )""",
    ]
    # Columns added since the table's first version (empty until the view is rebuilt).
    added_columns = {"mfa_users_grid": [("required_by", "text")]}
    # The search (`_SEARCH`: a substring of the email or the name) on PostgreSQL: pg_trgm's GIN
    # indexes on exactly the expressions it compares, one per column, so the planner can join
    # them in a BitmapOr. The operator class is qualified with the extension's schema, which
    # need not be on this service's search_path. The planner weighs that bitmap against reading
    # the (org_id, email) index in order until a page is full, by how many rows it expects to
    # match: a finer histogram of the expressions (1,000 values, not 100) keeps a rare name
    # from being counted as 1% of the users. Searches of 1 or 2 characters have no trigram and
    # take the ordered index or a scan. On SQLite the search filters the organization's rows
    # in index order (README, "The users grid").
    postgres_schema = [
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_email_trgm"
        " ON mfa_users_grid USING gin (lower(email) {pg_trgm}.gin_trgm_ops)",
        "CREATE INDEX IF NOT EXISTS mfa_users_grid_name_trgm"
        " ON mfa_users_grid USING gin (lower(name) {pg_trgm}.gin_trgm_ops)",
        "ALTER INDEX mfa_users_grid_email_trgm ALTER COLUMN 1 SET STATISTICS 1000",
        "ALTER INDEX mfa_users_grid_name_trgm ALTER COLUMN 1 SET STATISTICS 1000",
    ]

    @singledispatchmethod
    def statements(self, event: Any, position: int) -> list[Statement]:
        return []

    @statements.register
    def _(self, e: Account.AccountCreated, position: int) -> list[Statement]:
        return [("INSERT INTO mfa_users_grid_counts (org_id, total, on_count, required_count)"
                 " VALUES (?, 1, 0, 0) ON CONFLICT (org_id) DO UPDATE"
                 " SET total = mfa_users_grid_counts.total + 1",
                 (str(e.org_id),)),
                ("INSERT INTO mfa_users_grid (user_id, org_id, email, name, role, status,"
                 " required) VALUES (?, ?, ?, ?, ?, 'off', ?) ON CONFLICT (user_id) DO UPDATE"
                 " SET org_id = excluded.org_id, email = excluded.email, name = excluded.name,"
                 " role = excluded.role, status = 'off', required = excluded.required",
                 (str(e.user_id), str(e.org_id), e.email, e.name, e.role, False))]

    @statements.register
    def _(self, e: Account.ProfileChanged, position: int) -> list[Statement]:
        return [_set(e, "name = ?, role = ?", e.name, e.role)]

    @statements.register
    def _(self, e: MFA.MfaCreated, position: int) -> list[Statement]:
        required = bool(e.required)
        return [_count_change(e, "required_count", "required", required),
                _set(e, "required = ?, required_by = ?", required,
                     e.required_by if required else None)]

    @statements.register
    def _(self, e: MFA.RequirementSet, position: int) -> list[Statement]:
        required = bool(e.required)
        return [_count_change(e, "required_count", "required", required),
                _set(e, "required = ?, required_by = ?", required,
                     e.reason if required else None)]

    @statements.register(MFA.TotpConfirmed)
    @statements.register(MFA.PasskeyRegistered)
    def _(self, e: MFA.Event, position: int) -> list[Statement]:
        return [_count_change(e, "on_count", "status", "on"), _set(e, "status = 'on'")]

    @statements.register
    def _(self, e: MFA.PasskeyRemoved, position: int) -> list[Statement]:
        if e.still_on:
            return []
        return [_count_change(e, "on_count", "status", "off"), _set(e, "status = 'off'")]

    @statements.register(MFA.ResetByAdmin)
    @statements.register(MFA.TwoFactorDisabled)
    def _(self, e: MFA.Event, position: int) -> list[Statement]:
        return [_count_change(e, "on_count", "status", "off"), _set(e, "status = 'off'")]


def _count_change(event: Any, counter: str, column: str, value: Any) -> Statement:
    """Moves the organization's counter by +1 or -1 when the user's `column` is about to change
    to `value` (+1 when it becomes 'on' / true). Runs before the row itself is updated."""
    becomes = value == "on" if column == "status" else bool(value)
    return (f"UPDATE mfa_users_grid_counts SET {counter} = {counter} + COALESCE(("  # noqa: S608
            f"SELECT CASE WHEN {column} <> ? THEN {1 if becomes else -1} ELSE 0 END"
            " FROM mfa_users_grid WHERE user_id = ?), 0) WHERE org_id = ?",
            (value, str(event.user_id), str(event.org_id)))


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
    # Paging back: (email, user_id) of the first row of the page after the one wanted.
    before: tuple[str, str] | None = None
    limit: int = 50


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "two_factor_status": row["status"],
        "two_factor_required": bool(row["required"]),
        # Who requires it: "admin" or "policy" (the organization's), null when not required.
        "two_factor_required_by": row.get("required_by"),
    }


# Both sides lower-cased the same way (SQLite's connection registers Python's lower), and the
# typed text escaped, so `%`, `_` and `\` match themselves.
_SEARCH = "(lower(email) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\')"


def _pattern(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page_sql(query: GridQuery) -> tuple[str, list[Any]]:
    """The SELECT of one page (limit + 1 rows, to tell whether more follow) and its arguments."""
    where = ["org_id = ?"]
    args: list[Any] = [str(query.org_id)]
    if query.status is not None:
        where.append("status = ?")
        args.append(query.status)
    if query.required is not None:
        where.append("required = ?")
        args.append(query.required)
    if query.q:
        where.append(_SEARCH)
        args += [_pattern(query.q)] * 2
    # Row comparisons: one index range scan, forward or (paging back) backward.
    if query.after is not None:
        where.append("(email, user_id) > (?, ?)")
        args += [query.after[0], query.after[1]]
    if query.before is not None:
        where.append("(email, user_id) < (?, ?)")
        args += [query.before[0], query.before[1]]
    order = "email DESC, user_id DESC" if query.before is not None else "email, user_id"
    sql = ("SELECT user_id, email, name, role, status, required, required_by"  # noqa: S608
           " FROM mfa_users_grid"
           f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?")
    return sql, [*args, query.limit + 1]


async def page(db: Database, query: GridQuery) -> tuple[list[dict[str, Any]], bool]:
    """One page in (email, user_id) order, and whether more follow it (with `before`: whether
    more precede it)."""
    sql, args = page_sql(query)
    rows = await db.fetch(sql, *args)
    shown = rows[: query.limit]
    if query.before is not None:
        shown.reverse()
    return [_row(r) for r in shown], len(rows) > query.limit


async def read(db: Database, org_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT user_id, email, name, role, status, required, required_by FROM mfa_users_grid"
        " WHERE user_id = ? AND org_id = ?", str(user_id), str(org_id))
    return _row(row) if row else None


def _matching(org_id: UUID, required: bool | None, status: str | None,
              q: str | None) -> tuple[str, list[Any]]:
    where: list[str] = ["org_id = ?"]
    args: list[Any] = [str(org_id)]
    if required is not None:
        where.append("required = ?")
        args.append(required)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if q:
        where.append(_SEARCH)
        args += [_pattern(q)] * 2
    return " AND ".join(where), args


async def user_ids(db: Database, org_id: UUID, *, required: bool | None = None,
                   status: str | None = None, q: str | None = None) -> list[UUID]:
    """Every user of the organization matching the filters (a bulk action's targets)."""
    where, args = _matching(org_id, required, status, q)
    rows = await db.fetch("SELECT user_id FROM mfa_users_grid"  # noqa: S608
                          f" WHERE {where} ORDER BY email, user_id", *args)
    return [UUID(row["user_id"]) for row in rows]


async def count_matching(db: Database, org_id: UUID, *, required: bool | None = None,
                         status: str | None = None, q: str | None = None) -> int:
    """How many users match the filters (the grid's "Select all N matching"), counted by the
    database rather than by fetching them."""
    where, args = _matching(org_id, required, status, q)
    row = await db.fetchrow("SELECT COUNT(*) AS n FROM mfa_users_grid"  # noqa: S608
                            f" WHERE {where}", *args)
    return int(row["n"]) if row is not None else 0


async def counts(db: Database, org_id: UUID) -> dict[str, int]:
    """How many users of the organization have 2FA On, Off, and Required (all filters aside)."""
    row = await db.fetchrow("SELECT total, on_count, required_count FROM mfa_users_grid_counts"
                            " WHERE org_id = ?", str(org_id))
    if row is None:
        return {"total": 0, "on": 0, "off": 0, "required": 0}
    total, on = int(row["total"]), int(row["on_count"])
    return {"total": total, "on": on, "off": total - on, "required": int(row["required_count"])}
