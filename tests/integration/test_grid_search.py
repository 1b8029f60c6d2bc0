"""The users grid's search `q` on both stores: what it finds (a case-insensitive substring of the
email or the name, with typed wildcards taken literally), combined with the filters and across
pages, forward and back; and, on PostgreSQL at a realistic size, that the planner answers it from
the trigram indexes rather than by a scan."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from services.mfa.bootstrap import Service
from services.mfa.projections import users_grid
from tests.conftest import Api, FrozenClock, Org, enable_two_factor

PEOPLE = [  # email, name, 2FA Required, 2FA On
    ("ada.lovelace@analytical.example", "Ada Lovelace", True, True),
    ("grace.hopper@navy.example", "Grace Hopper", False, True),
    ("emilie@chatelet.example", "Émilie du Châtelet", True, False),
    ("hans@ørsted.example", "Hans Christian ØRSTED", False, False),
    ("pct@example.com", "Really 100% Sure", False, False),
    ("pctdecoy@example.com", "Really 1000 Sure", True, False),
    ("snake_case@example.com", "Under Score", False, False),
    ("snakexcase@example.com", "Under Decoy", False, False),
    ("back@example.com", "Back\\Slash", False, False),
    *[(f"member{n:02}@team.example", f"Member {n:02}", n % 3 == 0, n == 4) for n in range(12)],
]
SEARCHES = [
    "lovelace", "LOVELACE", "ada", "Grace H", "navy.example", "@team", "member 1", "MEMBER0",
    "émilie", "ÉMILIE", "châtelet", "ørsted", "ØRSTED", "hans@ø",
    "%", "100%", "0% s", "_", "e_c", "\\", "k\\s",
    "a", "é", "Ø", "ex", "r 0", " ", ".",  # 1 and 2 characters: no trigram, the same answers
    "example", "nobody-has-this",
]


def matches(row: dict[str, Any], q: str) -> bool:
    return q.lower() in row["email"].lower() or q.lower() in row["name"].lower()


@pytest.fixture
async def people(admin: Api, org: Org, new_browser, clock: FrozenClock) -> list[dict[str, Any]]:
    """Everyone in the organization (the admin included), in grid order."""
    for email, name, required, on in PEOPLE:
        status, body = await admin.post("/api/admin/users", {
            "email": email, "name": name, "role": "client", "password": "user-password-1",
            "two_factor_required": required})
        assert status == 201, body
        if on:
            browser = await new_browser()
            await browser.login(email, "user-password-1")
            await enable_two_factor(browser, "user-password-1", clock)
    rows = await whole_grid(admin)
    assert len(rows) == len(PEOPLE) + 1
    return rows


async def whole_grid(admin: Api, limit: int = 1000, **params: str) -> list[dict[str, Any]]:
    """Every row, page after page, following next_cursor to the end."""
    rows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        query = urlencode({**params, "limit": str(limit), "cursor": cursor})
        status, page = await admin.get(f"/api/admin/users?{query}")
        assert status == 200, page
        assert len(page["users"]) <= limit
        rows += page["users"]
        if page["next_cursor"] is None:
            return rows
        cursor = page["next_cursor"]
    raise AssertionError("pagination never ended")


async def test_search_finds_a_substring_of_the_email_or_the_name(
        admin: Api, people: list[dict[str, Any]]) -> None:
    for q in SEARCHES:
        expected = [row for row in people if matches(row, q)]
        assert await whole_grid(admin, q=q) == expected, q
        # Across pages of 2: the same rows, in the same order, none twice, none missed.
        assert await whole_grid(admin, limit=2, q=q) == expected, q
    assert [row["name"] for row in await whole_grid(admin, q="%")] == ["Really 100% Sure"]
    assert [row["name"] for row in await whole_grid(admin, q="_")] == ["Under Score"]
    assert [row["name"] for row in await whole_grid(admin, q="ørsted")] == [
        "Hans Christian ØRSTED"]


async def test_search_combines_with_the_filters_across_pages(
        admin: Api, people: list[dict[str, Any]]) -> None:
    for q in ("member", "example", "e", "a", "%"):
        for status in ("", "on", "off"):
            for required in ("", "true", "false"):
                expected = [row for row in people if matches(row, q)
                            and status in ("", row["two_factor_status"])
                            and required in ("", str(row["two_factor_required"]).lower())]
                params = {"q": q, "status": status, "required": required}
                assert await whole_grid(admin, limit=3, **params) == expected, params


async def test_paging_back_with_before_shows_the_same_pages(
        service: Service, org: Org, people: list[dict[str, Any]]) -> None:
    for q, limit in (("", 4), ("member", 3), ("e", 2), ("a", 5)):
        query = users_grid.GridQuery(org_id=uuid.UUID(org.org_id), q=q or None, limit=limit)
        forward: list[list[dict[str, Any]]] = []
        while True:
            rows, more = await users_grid.page(service.db, query)
            forward.append(rows)
            if not more:
                break
            last = rows[-1]
            query = users_grid.GridQuery(org_id=query.org_id, q=query.q, limit=limit,
                                         after=(last["email"], last["user_id"]))
        assert [row for rows in forward for row in rows] == [
            row for row in people if matches(row, q)]
        # From the last page back to the first, each `before` its successor's first row.
        for wanted, after in zip(reversed(forward[:-1]), reversed(forward[1:]), strict=True):
            first = after[0]
            rows, more = await users_grid.page(service.db, users_grid.GridQuery(
                org_id=query.org_id, q=query.q, limit=limit,
                before=(first["email"], first["user_id"])))
            assert rows == wanted
            assert more == (wanted is not forward[0])


# ---- PostgreSQL: the planner uses the trigram indexes ---------------------------------------

FIRST = ["ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "john", "margaret",
         "tim", "radia", "ken", "dennis", "linus", "guido", "bjarne", "anita"]
LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "allen", "backus",
        "hamilton", "berners-lee", "perlman", "thompson", "ritchie", "torvalds", "rossum",
        "stroustrup", "borg"]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def plan(service: Service, query: users_grid.GridQuery) -> list[dict[str, Any]]:
    sql, args = users_grid.page_sql(query)  # the very statement page() sends
    row = await service.db.fetchrow(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    assert row is not None
    explained = row["QUERY PLAN"]
    return list(plan_nodes(orjson.loads(explained)[0]["Plan"]))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_searches_through_the_trigram_indexes(service: Service) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    # 20,000 rows straight into the view, 18,000 of them in one organization: the planner's
    # choice depends on what the view holds, not on how it got there.
    await service.db.execute(
        "INSERT INTO mfa_users_grid (user_id, org_id, email, name, role, status, required)"
        " SELECT gen_random_uuid()::text, CASE WHEN n % 10 = 0 THEN ? ELSE ? END,"
        "  f || '.' || l || n || '@' || (ARRAY['acme', 'initech', 'globex'])[1 + n % 3]"
        "   || '.example',"
        "  initcap(f) || ' ' || initcap(l), 'client',"
        "  CASE WHEN n % 2 = 0 THEN 'on' ELSE 'off' END, n % 3 = 0"
        " FROM generate_series(1, 20000) AS n,"
        "  LATERAL (SELECT (?::text[])[1 + n % 17] AS f, (?::text[])[1 + (n / 17) % 17] AS l) AS p",
        str(other), str(org), FIRST, LAST)
    await service.db.execute("VACUUM (ANALYZE) mfa_users_grid")  # as autovacuum and rebuilds do
    # pg_trgm lives in another schema (public, see conftest) than this test's tables.
    row = await service.db.fetchrow(
        "SELECT extnamespace::regnamespace::text AS extension, current_schema() AS tables"
        " FROM pg_extension WHERE extname = 'pg_trgm'")
    assert row is not None and row["extension"] != row["tables"]
    everyone = await service.db.fetch(
        "SELECT user_id, email, name, role, status, required FROM mfa_users_grid"
        " WHERE org_id = ? ORDER BY email, user_id", str(org))

    # Searches a few dozen users match: by email, with a filter, past a cursor, by name.
    for q, status, after in (("Hopper12", None, None), ("hopper12", "on", None),
                             ("hopper12", None, ("grace.hopper12", "")),
                             ("Grace Borg", None, None)):
        query = users_grid.GridQuery(org_id=org, q=q, status=status, after=after, limit=20)
        nodes = await plan(service, query)
        used = {node.get("Index Name") for node in nodes
                if node["Node Type"] == "Bitmap Index Scan"}
        assert {"mfa_users_grid_email_trgm", "mfa_users_grid_name_trgm"} <= used, (q, nodes)
        assert any(node["Node Type"] == "BitmapOr" for node in nodes), (q, nodes)
        assert not any(node["Node Type"] == "Seq Scan" for node in nodes), (q, nodes)
        expected = [
            r for r in everyone if (q.lower() in r["email"] or q.lower() in r["name"].lower())
            and status in (None, r["status"]) and (after is None or (r["email"], r["user_id"])
                                                    > after)]
        rows, more = await users_grid.page(service.db, query)
        assert 0 < len(expected)
        assert [r["user_id"] for r in rows] == [r["user_id"] for r in expected[:20]], q
        assert more == (len(expected) > 20)

    # A search matching most users reads the ordered index instead, and stops at the page.
    for q in ("example", "a", "knuth1"):
        nodes = await plan(service, users_grid.GridQuery(org_id=org, q=q, limit=20))
        assert [node["Node Type"] for node in nodes] == ["Limit", "Index Scan"], (q, nodes)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_never_caches_one_plan_for_every_search(service: Service) -> None:
    """After five runs of a prepared statement PostgreSQL may switch to a generic plan, made
    without the values: five searches only a scan can answer would then leave the scan cached
    for every later search on that connection, rare names included."""
    org = uuid.uuid4()
    for _ in range(5):  # the pool may lend another connection in between: until one had them all
        for _ in range(8):
            await users_grid.page(service.db, users_grid.GridQuery(org_id=org, q="zq"))
        statements = await service.db.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%FROM mfa_users_grid WHERE%LIKE%'"
            " AND statement NOT LIKE '%pg_prepared_statements%'"
            " AND generic_plans + custom_plans > 5")
        if statements:
            break
    assert statements, "no connection ran the search more than five times"
    assert all(row["generic_plans"] == 0 for row in statements), statements
