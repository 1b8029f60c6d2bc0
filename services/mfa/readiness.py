"""What "ready" means, for every process of the MFA service: the one place its `/readyz`
checks come from (the API's and `mfa serve`'s own port, the health port of `mfa projector`
and `mfa relay`). Each check raises when its dependency cannot be used right now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.runtime.web import Check, NotReady

if TYPE_CHECKING:
    from services.mfa.bootstrap import Service


def checks(service: Service, *, bus: bool = True) -> dict[str, Check]:
    """`bus`: whether this process publishes (the API its SessionEnded messages, the relay
    every event); the projector does not."""

    async def store() -> None:
        await service.db.ping()
        await service.call(service.app.recorder.max_notification_id)

    async def message_bus() -> None:
        await service.bus.ping()

    async def views() -> None:
        """A view of this process stopped on an event it cannot apply (it retries)."""
        stopped = [f"{runner.name}: {runner.failure.describe()}"
                   for runner in service.projections if runner.failure is not None]
        if stopped:
            raise NotReady("stopped on " + "; ".join(stopped))

    found: dict[str, Check] = {"store": store, "bus": message_bus} if bus else {"store": store}
    if service.views.running:  # the views run in this process (mfa serve, mfa projector)
        found["views"] = views
    return found
