"""Credentials out of URLs and text: the one redaction both packages use.

A URL may carry a secret in three places: the `user:password@` part, a credential query
parameter (`?password=`, `?sslpassword=`, `?token=`, ...), and text that quotes the URL (an error
message, a log line). `redact_url` hides the first two; `redact_text` finds every URL in a piece
of text and redacts each. Everything taskline prints, logs or serves that may hold a URL goes
through one of them.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["CREDENTIAL_PARAMETERS", "MASK", "redact_text", "redact_url"]

MASK: Final = "***"
CREDENTIAL_PARAMETERS: Final = frozenset(
    {
        "password",
        "pass",
        "passwd",
        "pwd",
        "sslpassword",
        "secret",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "api_key",
        "apikey",
        "key",
        "sslkey_password",
        "sentinel_password",
        "credentials",
    }
)
"""Query parameters whose value is hidden (compared case-insensitively, `-` as `_`)."""

_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_QUERY_PAIR: Final = re.compile(r"([^&;=]+)=([^&;]*)")


def _credential(name: str) -> bool:
    return name.strip().lower().replace("-", "_") in CREDENTIAL_PARAMETERS


def _redact_query(query: str) -> str:
    return _QUERY_PAIR.sub(lambda m: f"{m[1]}={MASK}" if _credential(m[1]) and m[2] else m[0], query)


def redact_url(url: str) -> str:
    """The URL with its password and credential query parameters replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:{MASK}@{netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc, query=_redact_query(parts.query)))


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (an error message that quotes a URL, a log line)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m[0]), text)
