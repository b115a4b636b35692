"""What a process says when a service it needs goes away, and when it is back.

One WARNING when PostgreSQL or Redis becomes unreachable (which URL, which setting names it,
the error, what to check), one INFO when it answers again, and nothing in between but DEBUG
lines: an outage of an hour is two lines in the log, not one per retry, and alerting on
WARNING sees it. The process never gives up; it keeps trying until the service is back.
"""

from __future__ import annotations

import time
from typing import Any

from worker.config.settings import redact_url

__all__ = ["OutageLog"]


class OutageLog:
    def __init__(self, log: Any, *, service: str, setting: str, url: str, advice: str) -> None:
        self.log = log
        self.service = service
        self.setting = setting
        self.url = redact_url(url)
        self.advice = advice
        self.down_since: float | None = None
        self.ever_up = False

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def down(self, error: BaseException, *, what: str = "") -> None:
        """The service failed; logs at WARNING only on the first failure of an outage."""
        detail = f"{type(error).__name__}: {error}".strip().rstrip(":")[:300]
        if self.down_since is not None:
            self.log.debug(f"{self.service} still unreachable", error=detail)
            return
        self.down_since = time.monotonic()
        verb = "lost the connection to" if self.ever_up else "cannot reach"
        self.log.warning(
            f"{verb} {self.service} at {self.url} ({self.setting}); {what}retrying until it answers",
            error=detail,
            next_step=self.advice,
        )

    def up(self) -> None:
        """The service answered; logs at INFO once, when an outage ends."""
        self.ever_up = True
        if self.down_since is None:
            return
        lasted = time.monotonic() - self.down_since
        self.down_since = None
        self.log.info(f"{self.service} is reachable again", url=self.url, outage_s=round(lasted, 1))
