"""The web pages: Jinja2 templates and the static files (one stylesheet, small JS modules)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
