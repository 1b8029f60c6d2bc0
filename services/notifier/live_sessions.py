"""The open WebSockets of this notifier instance, by user."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger(__name__)


class LiveSessions:
    def __init__(self) -> None:
        self._sockets: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)
        # What each socket's bar shows now, so a page is told only of a change.
        self._shown: dict[web.WebSocketResponse, tuple[Any, ...]] = {}
        # The session token each socket was opened with, to check it again later, and that
        # session's id, to close its pages when it ends.
        self._tokens: dict[web.WebSocketResponse, str] = {}
        self._session_ids: dict[web.WebSocketResponse, str] = {}

    def add(self, user_id: str, socket: web.WebSocketResponse, token: str = "",
            session_id: str = "") -> None:
        self._sockets[user_id].add(socket)
        self._tokens[socket] = token
        self._session_ids[socket] = session_id

    def tokens(self) -> list[tuple[str, web.WebSocketResponse, str]]:
        return [(user_id, socket, self._tokens.get(socket, ""))
                for user_id, sockets in self._sockets.items() for socket in sockets]

    def remove(self, user_id: str, socket: web.WebSocketResponse) -> None:
        self._shown.pop(socket, None)
        self._tokens.pop(socket, None)
        self._session_ids.pop(socket, None)
        sockets = self._sockets.get(user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[user_id]

    def count(self) -> int:
        return sum(len(sockets) for sockets in self._sockets.values())

    async def send_banner(self, user_id: str, message: dict[str, Any],
                          only: web.WebSocketResponse | None = None) -> int:
        """Sends a banner to the user's pages (or `only` that one) whose bar it changes (a
        late, older event that says what a page already shows is not repeated)."""
        return await self.send(user_id, message, banner=True, only=only)

    async def send(self, user_id: str, message: dict[str, Any], *, banner: bool = False,
                   only: web.WebSocketResponse | None = None) -> int:
        """Sends to every open page of the user (or `only` that one); returns to how many."""
        data = orjson.dumps(message).decode()
        shown = (message.get("show"), message.get("status"), message.get("required"))
        sent = 0
        sockets = [only] if only is not None else list(self._sockets.get(user_id, ()))
        for socket in sockets:
            if banner:
                if self._shown.get(socket) == shown:
                    continue
                self._shown[socket] = shown
            if socket.closed:
                self.remove(user_id, socket)
                continue
            try:
                await socket.send_str(data)
                sent += 1
            except (ConnectionResetError, RuntimeError):
                self.remove(user_id, socket)
        return sent

    async def end_session(self, user_id: str, session_id: str | None) -> int:
        """Closes the pages of that session (None: of every session of the user); returns how
        many. Code 4401 tells the page its session is over."""
        ended = [socket for socket in list(self._sockets.get(user_id, ()))
                 if session_id is None or self._session_ids.get(socket) == session_id]
        for socket in ended:
            self.remove(user_id, socket)
            await socket.close(code=4401, message=b"session ended")
        return len(ended)

    async def close_all(self) -> None:
        for user_id, sockets in list(self._sockets.items()):
            for socket in list(sockets):
                await socket.close(code=1001, message=b"notifier shutting down")
            self._sockets.pop(user_id, None)
