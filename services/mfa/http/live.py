"""The notifier inside `mfa serve`: `/ws` on the API's own port, fed by the service's bus."""

from __future__ import annotations

from services.mfa.bootstrap import Service
from services.notifier.websocket import Authenticate, Viewer


def session_authenticator(service: Service) -> Authenticate:
    """Checks the cookie against the session store directly (the standalone notifier asks the
    API instead). A session still waiting for its second factor gets no socket."""

    async def authenticate(token: str) -> Viewer | None:
        session = await service.sessions.get(token, service.clock.now())
        if session is None or session.state == "second_factor":
            return None
        state = await service.two_factor(session.user_id)
        return Viewer(str(session.user_id), state["status"], state["required"])

    return authenticate
