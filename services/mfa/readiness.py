"""What "ready" means, for every process of the MFA service: the one place its `/readyz`
checks come from (the API's and `mfa serve`'s own port, the health port of `mfa projector`
and `mfa relay`). Each check raises when its dependency cannot be used right now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.runtime.web import Check

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

    return {"store": store, "bus": message_bus} if bus else {"store": store}
