"""The standalone notifier's entry point: `python -m services.notifier`, or `mfa notifier`.

Its own settings (services/notifier/config.py), its own logs: nothing of the MFA service is
imported, so it deploys and starts without it.
"""

from __future__ import annotations

import sys

from aiohttp import web

from services.notifier.app import create_notifier_app
from services.notifier.config import NotifierSettings
from services.runtime import process
from services.runtime.settings import ConfigError


def main() -> int:
    try:
        settings = NotifierSettings.from_env()
    except ConfigError as e:
        print(f"mfa notifier: {e}", file=sys.stderr)
        return 2
    if not settings.amqp_url:
        print("mfa notifier: MFA_AMQP_URL is required (under mfa serve the notifier runs "
              "in-process)", file=sys.stderr)
        return 2
    process.start("mfa-notifier", settings.log_level)
    app = create_notifier_app(amqp_url=settings.amqp_url, exchange=settings.amqp_exchange,
                              api_urls=settings.api_url, allowed_origins=settings.allowed_origins,
                              public_url=settings.public_url,
                              check_seconds=settings.socket_check_seconds)
    print(f"mfa notifier listening on http://{settings.host}:{settings.notifier_port}", flush=True)
    # One JSON access line per request comes from services/runtime/web.py.
    web.run_app(app, host=settings.host, port=settings.notifier_port, print=None,
                access_log=None)
    return 0
