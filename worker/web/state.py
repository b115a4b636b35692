"""What every request of the page shares: settings, connections, access rules, templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.templating import Jinja2Templates

from worker.config.settings import Settings
from worker.store.engine import Sessions
from worker.web.auth import Access, SignInThrottle
from worker.web.plots import KeptHistory

__all__ = ["WebState"]


@dataclass
class WebState:
    settings: Settings
    redis: Redis
    engine: AsyncEngine
    sessions: Sessions
    access: Access
    sign_ins: SignInThrottle
    templates: Jinja2Templates
    kept_history: KeptHistory
    outbox_engine: AsyncEngine | None = None
    """The outbox's database (TASKLINE_OUTBOX_DATABASE_URL) when it is not DATABASE_URL's: the trace
    reads a command's outbox rows there; None: the outbox is in `engine`'s database."""
    status_cache: tuple[float, dict[str, Any]] | None = None
    """The last status reading and when (monotonic) it was taken."""
