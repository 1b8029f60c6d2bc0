"""The audit log: every public event, already stripped of secrets, indexed by organization and
user, so an organization's history pages fast however many tenants share the log."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from services.mfa.adapters.database import Database, Statement
from services.mfa.public_events import is_public, to_audit


class AuditLogProjection:
    name = "audit_log"
    tables: tuple[str, ...] = ("mfa_audit_log",)
    schema = [
        """CREATE TABLE IF NOT EXISTS mfa_audit_log (
            position bigint PRIMARY KEY,
            event_id text NOT NULL,
            org_id text NOT NULL,
            user_id text,
            type text NOT NULL,
            actor text NOT NULL,
            occurred_at text NOT NULL,
            data text NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS mfa_audit_log_org ON mfa_audit_log (org_id, position)",
        "CREATE INDEX IF NOT EXISTS mfa_audit_log_user"
        " ON mfa_audit_log (org_id, user_id, position)",
    ]
    postgres_schema: list[str] = []

    def statements(self, event: Any, position: int) -> list[Statement]:
        if not is_public(event):
            return []
        record = to_audit(event, position)
        return [("INSERT INTO mfa_audit_log (position, event_id, org_id, user_id, type, actor,"
                 " occurred_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                 " ON CONFLICT (position) DO NOTHING",
                 (position, record["id"], record["org_id"], record["user_id"], record["type"],
                  record["actor"], record["occurred_at"], orjson.dumps(record["data"]).decode()))]


async def page(db: Database, org_id: UUID, after: int, limit: int,
               user_id: UUID | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Events of the organization after `after`, in log order, and whether more follow."""
    where, args = "org_id = ? AND position > ?", [str(org_id), after]
    if user_id is not None:
        where += " AND user_id = ?"
        args.append(str(user_id))
    rows = await db.fetch(
        "SELECT position, event_id, type, user_id, org_id, actor, occurred_at, data"  # noqa: S608
        f" FROM mfa_audit_log WHERE {where} ORDER BY position LIMIT ?", *args, limit + 1)
    events = [{
        "position": int(row["position"]), "id": row["event_id"], "type": row["type"],
        "user_id": row["user_id"], "org_id": row["org_id"], "actor": row["actor"],
        "occurred_at": row["occurred_at"], "data": orjson.loads(row["data"]),
    } for row in rows[:limit]]
    return events, len(rows) > limit
