"""Refusals a client could provoke stay domain errors, never crashes or asserts."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.mfa.application import MfaApplication
from services.mfa.domain import recovery_codes, totp
from services.mfa.domain.errors import AccountNotFound, InvalidRole


@pytest.fixture
def app() -> MfaApplication:
    return MfaApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


def test_non_ascii_codes_are_refused_not_crashed_on() -> None:
    secret = totp.new_secret()
    now = datetime.now(UTC)
    right = totp.code_for_step(secret, totp.step_at(now))
    fullwidth = right.translate(FULLWIDTH)
    assert totp.matching_step(secret, fullwidth, now, after_step=-1) is None
    assert recovery_codes.find_unused(["12345678"], [False],
                                      "12345678".translate(FULLWIDTH)) is None


def test_unknown_users_are_account_not_found(app: MfaApplication) -> None:
    for call in (lambda: app.mfa(uuid4()), lambda: app.disable(uuid4()),
                 lambda: app.verify_second_factor(uuid4(), "123456"),
                 lambda: app.recovery_codes(uuid4())):
        with pytest.raises(AccountNotFound):
            call()


def test_an_unknown_role_is_a_domain_error(app: MfaApplication) -> None:
    org_id, _ = app.create_organization("Org", "a@b.example", "A", "hash-1", "system").value
    with pytest.raises(InvalidRole):
        app.create_user(org_id, "c@d.example", "C", "root", "hash-1", False, "system")
