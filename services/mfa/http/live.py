"""The notifier inside `mfa serve`: `/ws` on the API's own port, fed by the service's bus."""

from __future__ import annotations

from services.mfa.bootstrap import Service
from services.mfa.http.auth import checked
from services.notifier.websocket import Authenticate, Viewer


def session_authenticator(service: Service) -> Authenticate:
    """Checks the cookie against the session store directly (the standalone notifier asks the
    API instead). A session still waiting for its second factor gets no socket. A check is not
    a use: it does not keep an idle session alive."""

    async def authenticate(token: str) -> Viewer | None:
        session = await service.sessions.get(token, service.clock.now(), touch=False)
        if session is not None:
            session = await checked(service, session)
        if session is None or session.state == "second_factor":
            return None
        state = await service.two_factor(session.user_id)
        return Viewer(str(session.user_id), state["status"], state["required"], session.sid)

    return authenticate
