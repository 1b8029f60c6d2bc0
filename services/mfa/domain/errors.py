"""Every way a 2FA command can be refused. One type per failure; HTTP maps them in one place."""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """Base of the refusals a client can cause; never a server fault."""


class InvalidCredentials(DomainError):
    """Wrong email or password. `locked_until`: the wait this failure started, if it did."""

    def __init__(self, locked_until: datetime | None = None) -> None:
        super().__init__()
        self.locked_until = locked_until


class InvalidCode(DomainError):
    """A wrong, expired or already used TOTP or recovery code. `locked_until`: the wait this
    failure started, if it did."""

    def __init__(self, locked_until: datetime | None = None) -> None:
        super().__init__()
        self.locked_until = locked_until


class LockedOut(DomainError):
    """Too many consecutive failures: the account waits until `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until.isoformat()}")
        self.until = until


class SecondFactorOwed(DomainError):
    """A session that proved only the password tried to configure 2FA after the user turned it
    on elsewhere: it owes the second factor now."""


class PasskeyAlreadyRegistered(DomainError):
    """This security key is registered already."""


class PasskeyNotFound(DomainError):
    """No such security key or passkey on this account."""


class PasskeyCloned(DomainError):
    """A key signed with a counter that did not move forward: a copy of it, refused."""


class NoEnrollmentInProgress(DomainError):
    """Setup verification without a setup started in the current window."""


class SetupWindowExpired(DomainError):
    """The 10-minute setup window ran out."""


class TwoFactorNotOn(DomainError):
    """Codes or disabling asked for while 2FA is Off."""


class TwoFactorRequired(DomainError):
    """Disabling 2FA while the admin requires it."""


class RequiredByPolicy(DomainError):
    """Not required, while the organization requires 2FA for all users."""


class EmailAlreadyUsed(DomainError):
    """Another account has this email."""


class InvalidRole(DomainError):
    """A role other than client or admin."""


class AccountNotFound(DomainError):
    """No such user (or organization) for the caller."""
