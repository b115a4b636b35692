"""Who may change anything from the page: nobody, unless TASKLINE_WEB_PASSWORD is set.

With a password, the page's actions (replay, discard, delete, run now, pause, resume) need HTTP
basic authentication (user TASKLINE_WEB_USER, default `admin`) and a CSRF token: browsers resend
basic credentials on any request to the site, a form posted from another site included, so each
form carries a token that only a page served to an authenticated user contains (an HMAC, under a
key made at start-up, of the credentials), and a POST whose Origin names another host is refused as
well. Who sent a POST is judged from its head (`check_sender`) before its body is read; the token
is checked after. Failed sign-ins are limited per client address (`SignInThrottle`). Serve the page
over HTTPS (a proxy in front) wherever the network is not trusted: basic credentials are not
encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["Access", "Refusal", "SignInThrottle"]


class Refusal(Exception):
    """A change refused; `status` and the message say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Access:
    def __init__(self, user: str, password: str | None) -> None:
        self.user = user
        self._password = password
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        """Whether changes are possible at all (a password is configured)."""
        return bool(self._password)

    def authenticated(self, request: Request) -> bool:
        if not self._password:
            return False
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        same_password = hmac.compare_digest(password.encode(), self._password.encode())
        return same_user and same_password

    def csrf_token(self) -> str:
        message = f"{self.user}:{self._password}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def check_sender(self, request: Request) -> None:
        """Raise Refusal unless this POST may change something, judged from its head alone:
        called before the body is read."""
        if not self.enabled:
            raise Refusal(
                403,
                "read-only: set TASKLINE_WEB_PASSWORD (and restart `taskline web`)"
                " to act on the queue and the dead letters",
            )
        if not self.authenticated(request):
            raise Refusal(401, "sign in first (user TASKLINE_WEB_USER, password TASKLINE_WEB_PASSWORD)")
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refusal(403, "refused: the form was posted from another site")

    def check_token(self, token: str | None) -> None:
        """Raise Refusal unless `token` (the form's) is this page's CSRF token."""
        if not token or not hmac.compare_digest(token.encode(), self.csrf_token().encode()):
            raise Refusal(403, "refused: the form's CSRF token is missing or stale; reload the page and try again")

    def check_change(self, request: Request, token: str | None) -> None:
        """Raise Refusal unless this POST, with its form's `token`, may change something."""
        self.check_sender(request)
        self.check_token(token)


class SignInThrottle:
    """Failed sign-ins per client address: after `limit` failures within `window_s`, that address
    is refused (429) until the window has passed, password right or wrong, so a password cannot
    be guessed at the speed of the network. Memory is bounded: at most `max_peers` addresses are
    remembered (the oldest forgotten first)."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window_s: float = 60.0,
        max_peers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_peers = max_peers
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, peer: str) -> deque[float]:
        failures = self._failures.get(peer)
        if failures is None:
            return deque()
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[peer]
        return failures

    def __len__(self) -> int:
        """How many addresses are remembered."""
        return len(self._failures)

    def retry_after_s(self, peer: str) -> float:
        """0 when `peer` may try; else how many seconds until it may."""
        failures = self._recent(peer)
        if len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window_s - self._clock())

    def failed(self, peer: str) -> None:
        failures = self._failures.setdefault(peer, deque(maxlen=self.limit))
        failures.append(self._clock())
        self._failures.move_to_end(peer)
        while len(self._failures) > self.max_peers:
            self._failures.popitem(last=False)
