"""How a standalone notifier checks a socket's session cookie: `GET /api/session` on the API,
through whichever of its instances answers (MFA_API_URL, comma-separated).

One API instance going away must not stop new sockets everywhere: a check that gets no answer
from an instance (refused, reset, timed out) or a 5xx moves on to the next one, and the
instance that answered is asked first next time. Each attempt has its own short timeouts, so a
check is bounded by about `len(api_urls)` times the attempt timeout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import aiohttp

from contracts.http import SESSION_COOKIE
from services.notifier.websocket import SessionCheckFailed, Viewer

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# A live instance answers /api/session in milliseconds; a dead host should cost little more.
ATTEMPT_TIMEOUT = aiohttp.ClientTimeout(total=3, sock_connect=1)


class ApiSessionCheck:
    """The notifier's `Authenticate`: the session behind a cookie, asked of the API."""

    def __init__(self, client: aiohttp.ClientSession, api_urls: Sequence[str],
                 timeout: aiohttp.ClientTimeout = ATTEMPT_TIMEOUT) -> None:
        if not api_urls:
            raise ValueError("at least one API URL")
        self._client = client
        self._urls = [url.rstrip("/") for url in api_urls]
        self._timeout = timeout
        self._healthy = 0  # the index of the instance that answered last

    @property
    def healthy_url(self) -> str:
        return self._urls[self._healthy]

    async def __call__(self, token: str) -> Viewer | None:
        """The viewer, or None when the API says the session is not live. Raises
        SessionCheckFailed when no instance could tell (an open page is then left alone)."""
        if not _TOKEN.match(token):
            return None
        problems = []
        for offset in range(len(self._urls)):
            index = (self._healthy + offset) % len(self._urls)
            try:
                answered, viewer = await self._ask(self._urls[index], token)
            except aiohttp.ClientResponseError as e:
                answered, viewer = False, None
                problems.append(f"{self._urls[index]}: HTTP {e.status}")
            except (aiohttp.ClientError, TimeoutError) as e:
                answered, viewer = False, None
                problems.append(f"{self._urls[index]}: {type(e).__name__} {e}".rstrip())
            if answered:
                if index != self._healthy:
                    log.warning("session checks now go to %s (%s)", self._urls[index],
                                "; ".join(problems))
                    self._healthy = index
                return viewer
        raise SessionCheckFailed("no API instance answered: " + "; ".join(problems))

    async def _ask(self, url: str, token: str) -> tuple[bool, Viewer | None]:
        # A check, not a use: /api/session does not keep an idle session alive.
        async with self._client.get(f"{url}/api/session", timeout=self._timeout,
                                    headers={"Cookie": f"{SESSION_COOKIE}={token}"},
                                    allow_redirects=False) as response:
            if response.status >= 500:
                # The instance cannot answer right now (its store is away, say): ask another.
                await response.read()
                raise aiohttp.ClientResponseError(response.request_info, response.history,
                                                  status=response.status)
            if response.status != 200:
                return True, None
            me = await response.json()
        return True, Viewer(me["user_id"], me["two_factor"]["status"],
                            me["two_factor"]["required"], me["session"]["id"])

