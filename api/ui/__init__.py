"""The dashboard: server-rendered pages under ``/ui`` (docs/api.md, Dashboard)."""

from api.ui.routes import router

__all__ = ["router"]
