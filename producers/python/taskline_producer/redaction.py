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

__all__ = ["CREDENTIAL_PARAMETERS", "MASK", "redact_text", "redact_url", "split_authority"]

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


def split_authority(url: str) -> tuple[str, str, str] | None:
    """`scheme://authority/rest` as (scheme in lower case, authority, the rest from its first `/`,
    `?` or `#`), without judging the authority: a Sentinel URL names several hosts
    (`h1:26379,[::1]:26380`), which urllib refuses since Python 3.11.4 and Debian's 3.11.2 (it
    takes them for a malformed IPv6 literal). None when the URL has no `://`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        return None
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends, default=len(rest))
    return scheme.lower(), rest[:end], rest[end:]


def redact_url(url: str) -> str:
    """The URL with its password and credential query parameters replaced by ***."""
    split = split_authority(url)
    try:
        if split is None:
            parts = urlsplit(url)
            return urlunsplit(parts._replace(query=_redact_query(parts.query)))
        scheme, authority, rest = split
        tail = urlsplit(f"x://host{rest}")  # path, query and fragment, whatever the hosts are
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    rest = urlunsplit(("", "", tail.path, _redact_query(tail.query), tail.fragment))
    return f"{scheme}://{authority}{rest}"


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (an error message that quotes a URL, a log line)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m[0]), text)
