"""Typed application keys shared by the HTTP modules."""

from __future__ import annotations

from aiohttp import web

from services.mfa.bootstrap import Service

SERVICE = web.AppKey("service", Service)
