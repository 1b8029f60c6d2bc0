"""Settings from the environment (SPEC section 4): the same names and defaults as ever, and one
clear line naming the variable for each kind of bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.mfa.config import ConfigError, Settings
from services.notifier.config import NotifierSettings

KEY = "k" * 40


def load(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"MFA_VAR_DIR": str(tmp_path / "var"), **env})


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert (settings.host, settings.port, settings.notifier_port) == ("127.0.0.1", 8080, 8081)
    assert settings.database_url == "sqlite:///var/mfa.db" and not settings.is_postgres
    assert (settings.amqp_url, settings.amqp_exchange) == ("", "mfa.events")
    assert settings.api_url == ("http://127.0.0.1:8080",)
    assert (settings.issuer, settings.setup_window_seconds) == ("MFA Service", 600)
    assert (settings.lockout_threshold, settings.lockout_base_seconds,
            settings.lockout_max_seconds) == (5, 30, 3600)
    assert (settings.session_max_age_seconds, settings.session_idle_seconds) == (43200, 3600)
    assert (settings.password_address_threshold, settings.password_account_threshold) == (100, 50)
    assert settings.hashing_threads >= 1 and settings.hashing_queue == 8
    assert (settings.public_url, settings.trusted_proxies, settings.allowed_origins) == ("", (), ())
    assert (settings.socket_check_seconds, settings.demo, settings.log_level) == (60, False, "INFO")
    assert settings.health_port is None
    # The embedded deployment makes its key once and keeps it.
    assert len(settings.secret_key) >= 32 and load(tmp_path).secret_key == settings.secret_key


def test_values_are_read_trimmed_and_parsed(tmp_path: Path) -> None:
    settings = load(tmp_path, MFA_PORT=" 8082 ", MFA_DEMO="yes", MFA_HOST="  ",
                    MFA_TRUSTED_PROXIES="10.1.2.3/8, 127.0.0.1",
                    MFA_ALLOWED_ORIGINS="https://a.example/, https://b.example",
                    MFA_PUBLIC_URL="HTTPS://MFA.Example.com/", MFA_HASHING_QUEUE="0",
                    MFA_SECRET_KEY=KEY, MFA_LOG_LEVEL="debug", MFA_HEALTH_PORT="9100")
    assert (settings.port, settings.demo, settings.host) == (8082, True, "127.0.0.1")
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.public_url == "https://mfa.example.com"
    assert (settings.hashing_queue, settings.secret_key, settings.log_level) == (0, KEY, "DEBUG")
    assert settings.health_port == 9100


def test_only_from_env_reads_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """A variable exported in a shell never leaks into settings made in code (the tests')."""
    monkeypatch.setenv("MFA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.setenv("MFA_SECRET_KEY", KEY)
    assert Settings(secret_key=KEY).amqp_url == ""
    assert load(tmp_path).amqp_url == ""  # a mapping given stands for the whole environment
    assert Settings.from_env().amqp_url == "amqp://guest:guest@127.0.0.1:5672/"


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"MFA_PORT": "eighty"}, "MFA_PORT must be an integer, got 'eighty'",
                 id="not-an-integer"),
    pytest.param({"MFA_LOCKOUT_THRESHOLD": "0"}, "MFA_LOCKOUT_THRESHOLD must be at least 1",
                 id="below-minimum"),
    pytest.param({"MFA_HASHING_QUEUE": "-1"}, "MFA_HASHING_QUEUE must be at least 0",
                 id="below-zero"),
    pytest.param({"MFA_NOTIFIER_PORT": "70000"}, "MFA_NOTIFIER_PORT must be at most 65535",
                 id="above-maximum"),
    pytest.param({"MFA_API_URL": "ftp://api.example"},
                 "MFA_API_URL must be a URL with a host, of scheme http or https", id="bad-url"),
    pytest.param({"MFA_AMQP_URL": "rabbit:5672"},
                 "MFA_AMQP_URL must be a URL with a host, of scheme amqp or amqps",
                 id="bad-amqp-url"),
    pytest.param({"MFA_PUBLIC_URL": "https://mfa.example.com/login"},
                 "MFA_PUBLIC_URL must be an origin", id="not-an-origin"),
    pytest.param({"MFA_DATABASE_URL": "mysql://db/mfa"},
                 "MFA_DATABASE_URL must start with sqlite:/// or postgresql://",
                 id="bad-database-url"),
    pytest.param({"MFA_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.300"},
                 "MFA_TRUSTED_PROXIES: '10.0.0.300' is not an IP address or CIDR",
                 id="bad-cidr"),
    pytest.param({"MFA_SECRET_KEY": "too-short-a-key"},
                 "MFA_SECRET_KEY must be at least 32 characters", id="short-secret-key"),
    pytest.param({"MFA_DATABASE_URL": "postgresql://u@db/mfa"},
                 "MFA_SECRET_KEY is required with a PostgreSQL database", id="platform-no-key"),
    pytest.param({"MFA_DEMO": "maybe"}, "MFA_DEMO must be 1 or 0", id="not-a-boolean"),
    pytest.param({"MFA_LOG_LEVEL": "loud"}, "MFA_LOG_LEVEL must be one of", id="bad-log-level"),
])
def test_a_bad_value_is_one_clear_line(tmp_path: Path, env: dict[str, str],
                                       message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **env)
    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_secrets_are_never_repeated_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, MFA_SECRET_KEY="hunter2-secret",
             MFA_AMQP_URL="http://guest:amqp-password@rabbit/",
             MFA_DATABASE_URL="mysql://u:db-password@db/mfa")
    text = str(raised.value)
    assert text.count("MFA_") == 3, text
    for secret in ("hunter2", "amqp-password", "db-password"):
        assert secret not in text
    assert "hunter2" not in repr(Settings(secret_key="hunter2-" * 5))


def test_the_notifier_reads_only_its_own_variables() -> None:
    settings = NotifierSettings.from_env({
        "MFA_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "MFA_NOTIFIER_PORT": "8083",
        "MFA_API_URL": "http://10.0.0.5:8080/", "MFA_SOCKET_CHECK_SECONDS": "5",
        "MFA_DATABASE_URL": "not even a URL", "MFA_SECRET_KEY": "short"})
    assert (settings.notifier_port, settings.api_url, settings.socket_check_seconds) == (
        8083, ("http://10.0.0.5:8080",), 5)
    assert set(NotifierSettings.model_fields) == {
        "log_level", "host", "notifier_port", "amqp_url", "amqp_exchange", "api_url",
        "allowed_origins", "public_url", "socket_check_seconds"}
    with pytest.raises(ConfigError, match="MFA_NOTIFIER_PORT must be an integer"):
        NotifierSettings.from_env({"MFA_NOTIFIER_PORT": "x"})
