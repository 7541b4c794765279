"""Vercel entry point: Vercel's Python runtime serves this module's ASGI `app`.

Settings come from the project's environment variables. The app is the serverless one (no
in-process scheduler; see docs/deploy.md). Never define a top-level `handler` here: Vercel
would take it for an `http.server` handler class and refuse to start.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from sellerdesk.main import create_serverless_app
except ModuleNotFoundError:  # deployed from the source tree without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from sellerdesk.main import create_serverless_app

app = create_serverless_app()
