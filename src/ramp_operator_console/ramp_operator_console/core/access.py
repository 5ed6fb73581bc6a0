"""Who may use the console (ROS-free): bind rules, token checks, cross-site protection.

- The console listens on loopback by default. Binding any other address without a token is
  refused (:func:`check_bind`): the page can move the robot.
- With a token, every HTTP and WebSocket request must carry it: ``?token=``, an
  ``Authorization: Bearer`` header, an ``X-Ramp-Token`` header, or the cookie the console sets
  when the page is opened with ``?token=`` (so the browser's later requests carry it). Tokens
  are compared in constant time.
- Without a token (loopback only), the ``Host`` header must name a loopback address, so a web
  page elsewhere cannot reach the console through DNS rebinding.
- Always: a request that carries an ``Origin`` (a browser's cross-site request) must come from
  the console's own origin, and state-changing requests must be JSON (which a cross-site form
  cannot send without the CORS pre-flight the console never grants).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "ramp_console_token"
"""Cookie that carries the token after the page was opened with ``?token=``."""

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class AccessError(ValueError):
    """A configuration the console refuses to start with; the text says what to change."""


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse to listen on a non-loopback address without a token (raises AccessError)."""
    if not is_loopback(host) and not token:
        raise AccessError(
            f"refusing to listen on {host or 'all addresses'!r} without a token: the console "
            f"can move the robot. Set the parameter 'token' (a long random string) or keep "
            f"host 127.0.0.1 and reach it through an SSH tunnel"
        )


def split_host(value: str) -> str:
    """The host part of a ``Host`` header value (``[::1]:8080`` -> ``::1``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class RequestInfo:
    """What the access rules look at in an HTTP or WebSocket request."""

    method: str
    host: str = ""
    origin: str = ""
    content_type: str = ""
    query_token: str = ""
    bearer_token: str = ""
    header_token: str = ""
    cookie_token: str = ""
    websocket: bool = False


@dataclass(frozen=True)
class Decision:
    """Allowed or not, the HTTP status to answer with, and why."""

    allowed: bool
    status: int = 200
    reason: str = ""


class AccessPolicy:
    """The console's access rules for one configured token ('' = no token, loopback only)."""

    def __init__(self, token: str, bind_host: str) -> None:
        check_bind(bind_host, token)
        self.token = token
        self.bind_host = bind_host

    def token_ok(self, request: RequestInfo) -> bool:
        """True when no token is configured or the request carries the right one."""
        if not self.token:
            return True
        expected = self.token.encode()
        candidates = (
            request.query_token,
            request.bearer_token,
            request.header_token,
            request.cookie_token,
        )
        return any(hmac.compare_digest(c.encode(), expected) for c in candidates if c)

    def check(self, request: RequestInfo) -> Decision:
        """Decide on one request (see the module docstring for the rules)."""
        if not self.token_ok(request):
            return Decision(False, 401, "missing or wrong token")
        if not self.token and not is_loopback(split_host(request.host)):
            return Decision(False, 403, f"host {request.host!r} is not a loopback name")
        if request.origin and request.origin != "null":
            origin_host = urlsplit(request.origin).netloc.lower()
            if origin_host != request.host.strip().lower():
                return Decision(False, 403, f"cross-origin request from {request.origin!r}")
        elif request.origin == "null":
            return Decision(False, 403, "request from an opaque origin")
        mutating = request.method.upper() not in ("GET", "HEAD") and not request.websocket
        json_body = request.content_type.split(";")[0].strip().lower() == "application/json"
        if mutating and not json_body:
            return Decision(False, 415, "commands must be sent as application/json")
        return Decision(True)
