"""The control API: VoIPbin-shaped REST under ``/v1.0``, served by Hypercorn in the daemon.

``create_app`` builds the Starlette application, ``set_api_config`` swaps in a reloaded
configuration, ``stop_imports`` abandons the file imports in progress when the daemon
stops, and ``serve_api`` serves it inside the daemon's task group. They are imported
when first used: an import worker process (``dialerd.store.sqlite.
import_process``) reads ``dialerd.api.targets_import`` without the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dialerd.api.app import create_app, set_api_config, stop_imports
    from dialerd.api.server import serve_api

__all__ = ["create_app", "serve_api", "set_api_config", "stop_imports"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "set_api_config", "stop_imports"):
        from dialerd.api import app

        return getattr(app, name)
    if name == "serve_api":
        from dialerd.api.server import serve_api

        return serve_api
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
