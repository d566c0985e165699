"""The control API: VoIPbin-shaped REST under ``/v1.0``, served by Hypercorn in the daemon.

``create_app`` builds the Starlette application, ``set_api_config`` swaps in a reloaded
configuration, and ``serve_api`` serves it inside the daemon's task group.
"""

from __future__ import annotations

from dialerd.api.app import create_app, set_api_config
from dialerd.api.server import serve_api

__all__ = ["create_app", "serve_api", "set_api_config"]
