"""Who may change anything from the page: nobody, unless TASKLINE_WEB_PASSWORD is set.

With a password, the page's actions (replay, discard, delete, run now, pause, resume) need HTTP
basic authentication (user TASKLINE_WEB_USER, default `admin`) and a CSRF token: browsers resend
basic credentials on any request to the site, a form posted from another site included, so each
form carries a token that only a page served to an authenticated user contains (an HMAC, under a
key made at start-up, of the credentials), and a POST whose Origin names another host is refused
as well. Serve the page over HTTPS (a proxy in front) wherever the network is not trusted: basic
credentials are not encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["Access", "Refusal"]


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

    def check_change(self, request: Request, token: str | None) -> None:
        """Raise Refusal unless this POST may change something."""
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
        if not token or not hmac.compare_digest(token, self.csrf_token()):
            raise Refusal(403, "refused: the form's CSRF token is missing or stale; reload the page and try again")
