"""TOTP as the product issues it: RFC vectors, drift window, replay, secrets and the key URI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pyotp
import pytest

from services.mfa.domain import totp
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import InvalidCode
from services.mfa.domain.lockout import LockoutPolicy
from tests.unit.support import WINDOW, code_at, enrolled_mfa, event_names, new_mfa

Digest = Callable[..., Any]

# ---- RFC 6238 Appendix B (errata seeds: one per hash) and RFC 4226 Appendix D -----------------

SEEDS: dict[str, tuple[bytes, Digest]] = {
    "SHA1": (b"12345678901234567890", hashlib.sha1),
    "SHA256": (b"12345678901234567890123456789012", hashlib.sha256),
    "SHA512": (b"1234567890123456789012345678901234567890123456789012345678901234",
               hashlib.sha512),
}

RFC6238 = [  # unix time, SHA1, SHA256, SHA512 (8 digits)
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
RFC6238_CELLS = [
    pytest.param(t, alg, row[i], id=f"{alg}-{t}")
    for t, *row in RFC6238
    for i, alg in enumerate(("SHA1", "SHA256", "SHA512"))
]

RFC4226 = [  # counter, truncated decimal, HOTP
    (0, 1284755224, "755224"),
    (1, 1094287082, "287082"),
    (2, 137359152, "359152"),
    (3, 1726969429, "969429"),
    (4, 1640338314, "338314"),
    (5, 868254676, "254676"),
    (6, 1918287922, "287922"),
    (7, 82162583, "162583"),
    (8, 673399871, "399871"),
    (9, 645520489, "520489"),
]

SHA1_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode().rstrip("=")


def truncate(key: bytes, counter: int, digest: Digest) -> int:
    """RFC 4226 dynamic truncation, offset from the last byte of the HMAC (errata 6756)."""
    mac = hmac.new(key, counter.to_bytes(8, "big"), digest).digest()
    offset = mac[-1] & 0x0F
    return int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF


def test_the_sha1_seed_is_the_base32_of_the_notes() -> None:
    assert b32(SEEDS["SHA1"][0]) == SHA1_SECRET
    assert len(SEEDS["SHA256"][0]) == 32 and len(SEEDS["SHA512"][0]) == 64


@pytest.mark.parametrize(("unix_time", "alg", "expected"), RFC6238_CELLS)
def test_rfc6238_appendix_b_with_pyotp(unix_time: int, alg: str, expected: str) -> None:
    seed, digest = SEEDS[alg]
    assert pyotp.TOTP(b32(seed), digits=8, digest=digest).at(unix_time) == expected
    # and an independent HMAC computation agrees, so pyotp is not the only witness
    assert f"{truncate(seed, unix_time // 30, digest) % 10**8:08d}" == expected


def test_rfc6238_has_all_eighteen_cells() -> None:
    assert len(RFC6238_CELLS) == 18


@pytest.mark.parametrize(("unix_time", "expected"), [(t, sha1) for t, sha1, _, _ in RFC6238])
def test_code_for_step_is_the_last_six_digits_of_the_sha1_column(unix_time: int,
                                                                   expected: str) -> None:
    step = totp.step_at(datetime.fromtimestamp(unix_time, tz=UTC))
    assert step == unix_time // 30
    assert totp.code_for_step(SHA1_SECRET, step) == expected[-6:]


@pytest.mark.parametrize(("unix_time", "expected"), [(t, sha1) for t, sha1, _, _ in RFC6238])
def test_matching_step_finds_the_rfc_step(unix_time: int, expected: str) -> None:
    now = datetime.fromtimestamp(unix_time, tz=UTC)
    assert totp.matching_step(SHA1_SECRET, expected[-6:], now, after_step=-1) == unix_time // 30


@pytest.mark.parametrize(("counter", "truncated", "expected"), RFC4226)
def test_rfc4226_appendix_d_hotp(counter: int, truncated: int, expected: str) -> None:
    assert pyotp.HOTP(SHA1_SECRET).at(counter) == expected
    assert truncate(SEEDS["SHA1"][0], counter, hashlib.sha1) == truncated
    # a TOTP step is an HOTP counter: our code for step N is HOTP(N)
    assert totp.code_for_step(SHA1_SECRET, counter) == expected


def test_product_parameters() -> None:
    assert (totp.DIGITS, totp.PERIOD_SECONDS, totp.DRIFT_STEPS) == (6, 30, 1)


# ---- past 2038 --------------------------------------------------------------------------------


def test_step_past_2038_is_not_truncated_to_32_bits() -> None:
    when = datetime(2040, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert when.timestamp() > 2**31
    step = totp.step_at(when)
    assert step == int(when.timestamp()) // 30
    secret = totp.new_secret()
    assert totp.code_for_step(secret, step) == pyotp.TOTP(secret).at(when)
    assert totp.matching_step(secret, totp.code_for_step(secret, step), when, -1) == step


def test_a_step_counter_above_32_bits() -> None:
    step = 2**32 + 7
    expected = f"{truncate(SEEDS['SHA1'][0], step, hashlib.sha1) % 10**6:06d}"
    assert totp.code_for_step(SHA1_SECRET, step) == expected
    assert expected != totp.code_for_step(SHA1_SECRET, 7)


def test_verify_with_a_frozen_clock_in_2603(policy: LockoutPolicy) -> None:
    clock = FrozenClock(datetime.fromtimestamp(20000000000, tz=UTC))
    mfa, secret, _ = enrolled_mfa(clock)
    assert mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u") == "totp"
    assert mfa.last_step == totp.step_at(clock.now())


# ---- drift window: T-1 and T+1 accepted, T-2 and T+2 refused ----------------------------------


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (0, True),
                                                  (1, True), (2, False)])
def test_matching_step_window(clock: FrozenClock, offset: int, accepted: bool) -> None:
    secret = totp.new_secret()
    now_step = totp.step_at(clock.now())
    code = totp.code_for_step(secret, now_step + offset)
    assert totp.matching_step(secret, code, clock.now(), after_step=-1) == (
        now_step + offset if accepted else None)


@pytest.mark.parametrize("offset", [-1, 1])
def test_codes_one_step_either_side_are_accepted(clock: FrozenClock, policy: LockoutPolicy,
                                                 offset: int) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    assert mfa.verify_second_factor(code_at(secret, clock, offset), policy, clock.now(),
                                    "u") == "totp"
    assert mfa.last_step == totp.step_at(clock.now()) + offset
    assert event_names(mfa)[-1] == "TotpAccepted"


@pytest.mark.parametrize("offset", [-2, 2])
def test_codes_two_steps_away_are_refused(clock: FrozenClock, policy: LockoutPolicy,
                                          offset: int) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    last_step = mfa.last_step
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code_at(secret, clock, offset), policy, clock.now(), "u")
    assert mfa.last_step == last_step
    assert mfa.failures == 1
    assert event_names(mfa)[-1] == "SecondFactorRejected"


def test_window_edges_follow_the_clock_within_a_step(policy: LockoutPolicy) -> None:
    """At the last second of step T, the code of T+2 is still refused; a second later it is
    the T+1 code and accepted."""
    clock = FrozenClock(datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC))
    mfa, secret, _ = enrolled_mfa(clock)
    clock.advance(29)
    step = totp.step_at(clock.now())
    future = totp.code_for_step(secret, step + 2)
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(future, policy, clock.now(), "u")
    clock.advance(1)
    assert totp.step_at(clock.now()) == step + 1
    assert mfa.verify_second_factor(future, policy, clock.now(), "u") == "totp"


# ---- replay -----------------------------------------------------------------------------------


def test_the_same_code_twice_second_refused(clock: FrozenClock, policy: LockoutPolicy) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    code = code_at(secret, clock)
    assert mfa.verify_second_factor(code, policy, clock.now(), "u") == "totp"
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code, policy, clock.now(), "u")
    assert event_names(mfa)[-2:] == ["TotpAccepted", "SecondFactorRejected"]
    assert mfa.failures == 1


def test_a_used_code_stays_refused_while_it_is_in_the_window(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    code = code_at(secret, clock)
    mfa.verify_second_factor(code, policy, clock.now(), "u")
    clock.advance(30)  # the used code is now the T-1 code, still inside the drift window
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code, policy, clock.now(), "u")


def test_a_code_accepted_early_is_refused_when_its_step_comes(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    early = code_at(secret, clock, 1)
    mfa.verify_second_factor(early, policy, clock.now(), "u")
    clock.advance(30)
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(early, policy, clock.now(), "u")


def test_after_step_t_the_older_t_minus_1_code_is_refused(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code_at(secret, clock, -1), policy, clock.now(), "u")


def test_after_step_t_the_next_steps_code_is_accepted(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    step = totp.step_at(clock.now())
    mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    clock.advance(30)
    assert mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u") == "totp"
    assert mfa.last_step == step + 1


def test_after_step_t_the_t_plus_1_code_is_accepted_at_once(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    assert mfa.verify_second_factor(code_at(secret, clock, 1), policy, clock.now(), "u") == "totp"


@pytest.mark.parametrize("after", [-1, 0, 1])
def test_matching_step_only_later_than_after_step(clock: FrozenClock, after: int) -> None:
    secret = totp.new_secret()
    step = totp.step_at(clock.now())
    for offset in (-1, 0, 1):
        code = totp.code_for_step(secret, step + offset)
        expected = step + offset if step + offset > step + after else None
        assert totp.matching_step(secret, code, clock.now(), after_step=step + after) == expected


# Two steps of one window can share a code (1 chance in 10**6 per pair). RFC SHA1 secret, found
# by search: steps 62075368 and 62075369 both give 235522 (2029-01-04); steps 61331809 and
# 61331811 both give 768734 (2028-04-21), with a different code between them.
COLLISIONS = [
    pytest.param(62075368, 0, 1, "235522", id="adjacent-steps"),
    pytest.param(61331810, -1, 1, "768734", id="steps-two-apart"),
]


@pytest.mark.parametrize(("step", "low", "high", "code"), COLLISIONS)
def test_the_collision_vectors_hold(step: int, low: int, high: int, code: str) -> None:
    codes = [totp.code_for_step(SHA1_SECRET, step + offset) for offset in (-1, 0, 1)]
    assert codes[low + 1] == codes[high + 1] == code
    assert codes.count(code) == 2


@pytest.mark.parametrize(("step", "low", "high", "code"), COLLISIONS)
def test_a_code_matching_two_steps_is_not_accepted_twice(step: int, low: int, high: int,
                                                         code: str) -> None:
    now = datetime.fromtimestamp(step * 30 + 5, tz=UTC)
    first = totp.matching_step(SHA1_SECRET, code, now, after_step=-1)
    assert first is not None
    assert totp.matching_step(SHA1_SECRET, code, now, after_step=first) is None


@pytest.mark.parametrize(("step", "low", "high", "code"), COLLISIONS)
def test_replay_of_a_code_shared_by_two_steps_is_refused(step: int, low: int, high: int,
                                                         code: str,
                                                         policy: LockoutPolicy) -> None:
    clock = FrozenClock(datetime.fromtimestamp((step - 20) * 30 + 5, tz=UTC))
    mfa = new_mfa(clock)
    mfa.start_enrollment(SHA1_SECRET, clock.now() + WINDOW, clock.now(), "u")
    mfa.confirm_enrollment(code_at(SHA1_SECRET, clock), [], clock.now(), "u")
    clock.set(datetime.fromtimestamp(step * 30 + 5, tz=UTC))
    assert mfa.verify_second_factor(code, policy, clock.now(), "u") == "totp"
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code, policy, clock.now(), "u")


def test_matching_step_refuses_malformed_codes(clock: FrozenClock) -> None:
    secret = totp.new_secret()
    code = code_at(secret, clock)
    for wrong in ("", code[:5], code + "0", f"{(int(code) + 1) % 10**6:06d}"):
        assert totp.matching_step(secret, wrong, clock.now(), after_step=-1) is None


# ---- secrets, setup key, key URI ---------------------------------------------------------------


def test_secrets_come_from_the_system_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(pyotp.random, secrets.SystemRandom)  # what random_base32 draws from
    picks: list[str] = []

    class Recorder(secrets.SystemRandom):
        def choice(self, seq: Any) -> Any:
            picks.append(seq)
            return super().choice(seq)

    monkeypatch.setattr(pyotp, "random", Recorder())
    secret = totp.new_secret()
    assert len(picks) == 32 and len(secret) == 32


def test_secrets_are_160_bit_base32_and_distinct() -> None:
    secrets_ = [totp.new_secret() for _ in range(200)]
    assert len(set(secrets_)) == 200
    for secret in secrets_:
        assert len(secret) == 32
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) * 8 >= 160


def test_setup_key_groups_of_four() -> None:
    assert totp.setup_key("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == (
        "ABCD EFGH IJKL MNOP QRST UVWX YZ23 4567")
    secret = totp.new_secret()
    key = totp.setup_key(secret)
    groups = key.split(" ")
    assert len(groups) == 8 and all(len(group) == 4 for group in groups)
    assert key.replace(" ", "") == secret


SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"


def test_provisioning_uri_exact_shape() -> None:
    uri = totp.provisioning_uri(SECRET, "john.doe@email.com", "ACME Co")
    assert uri == (
        "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"
        "&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
    )


def _split(uri: str) -> tuple[str, str, str, dict[str, str]]:
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    label = parts.path.removeprefix("/")
    assert label.count(":") == 1, label
    prefix, account = label.split(":")
    return prefix, account, parts.query, dict(parse_qsl(parts.query, strict_parsing=True))


@pytest.mark.parametrize(("issuer", "account"), [
    ("MFA Service", "alice@example.com"),
    ("Acme/Co: EU", "a/b:c d@example.com"),
    ("A&B=C+D %", "x+tag@example.com"),
])
def test_provisioning_uri_label_and_parameters(issuer: str, account: str) -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, account, issuer)
    prefix, label_account, query, params = _split(uri)
    raw_params = dict(pair.split("=") for pair in query.split("&"))
    for raw in (prefix, label_account, raw_params["issuer"]):
        assert not set(raw) & {"/", ":", " ", "&", "="}, raw
    assert query.count("=") == 5  # one per parameter: no base32 padding anywhere
    assert "=" not in params["secret"]
    assert unquote(prefix) == issuer
    assert unquote(label_account) == account
    assert params == {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": "6",
                      "period": "30"}
    assert query.endswith("&algorithm=SHA1&digits=6&period=30")


@pytest.mark.parametrize(("issuer", "account"), [
    ("MFA Service", "alice@example.com"),
    ("Acme/Co: EU", "a/b:c d@example.com"),
    ("A&B=C+D %", "x+tag@example.com"),
    ("Soci\u00e9t\u00e9 G\u00e9n\u00e9rale", "zo\u00eb@example.com"),
])
def test_provisioning_uri_round_trips_through_pyotp(issuer: str, account: str) -> None:
    secret = totp.new_secret()
    parsed = pyotp.parse_uri(totp.provisioning_uri(secret, account, issuer))
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == secret
    assert (parsed.name, parsed.issuer) == (account, issuer)
    assert (parsed.digits, parsed.interval, parsed.digest) == (6, 30, hashlib.sha1)
    when = datetime(2031, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parsed.at(when) == totp.code_for_step(secret, totp.step_at(when))
