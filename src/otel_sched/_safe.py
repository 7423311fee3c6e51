"""Naming a user's objects in messages without leaking what they carry.

A provider, exporter, session or configuration object can hold a token, headers or an endpoint
with credentials; its ``repr`` may print all of them (a dataclass does).  Messages and
exceptions name such an object by its type and show a URL without its userinfo or query.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def type_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s type: what messages say instead of ``repr(obj)``."""
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def safe_url(url: object) -> str:
    """``url`` without userinfo, query or fragment (``https://host:4318/v1/traces``); never raises."""
    if not isinstance(url, str):
        return f"<{type_name(url)}>"
    if "://" not in url:
        # "host:4317" (gRPC) or a path: anything before an '@' may be a secret.
        return url.rsplit("@", 1)[-1].split("?", 1)[0]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe(value: object) -> str:
    """``repr`` for ``None`` and numbers, ``<module.Type object>`` for anything that may hold a secret."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"<{type_name(value)} object>"
