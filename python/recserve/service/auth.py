"""API keys with two scopes, checked from the request's headers before anything reads its body.

``Authorization: Bearer <key>``. A *client* key may ask for feeds (``GET /v1/feed/{user}``) and
post events (``POST /v1/events``); an *admin* key may do everything. ``/healthz`` and
``/readyz`` are open. Every other route, including any added later, needs an admin key
(default deny). A missing or unknown key is 401 with ``WWW-Authenticate: Bearer``; a client
key on an admin route is 403.

Keys are held as SHA-256 digests (a configuration may give ``sha256:<64 hex>`` instead of the
key); a presented key is hashed and compared with every configured digest by
``hmac.compare_digest``, without stopping at a match.

With no keys configured auth is off, which ``recserve serve`` allows only on a loopback address
(:func:`unprotected_listen`) unless ``auth.allow_unauthenticated`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from recserve.service.asgi_json import send_json

if TYPE_CHECKING:
    from recserve.service.settings import AuthSettings, Settings

__all__ = [
    "Auth",
    "Keys",
    "is_loopback",
    "key_digest",
    "required_scope",
    "unprotected_listen",
]

Role = Literal["client", "admin"]

MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 256
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# (method, path) pairs a client key may use; anything not listed here or open needs admin.
_CLIENT_ROUTES = (
    ("GET", re.compile(r"/v1/feed/[^/]+")),
    ("POST", re.compile(r"/v1/events")),
)


def key_digest(key: str) -> bytes:
    """The SHA-256 digest a configured key stands for: the hex of ``sha256:<hex>``, else the
    hash of the key itself. ValueError (never quoting the key) if it is malformed."""
    if key.startswith("sha256:"):
        match = _HASHED.fullmatch(key)
        if match is None:
            raise ValueError("a sha256: key is 'sha256:' and 64 hex digits")
        return bytes.fromhex(match.group(1))
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise ValueError(
            f"a key has {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters, this one {len(key)} "
            "(make one with: openssl rand -hex 32)"
        )
    if not all("!" <= c <= "~" for c in key):
        raise ValueError("a key is printable ASCII without spaces")
    return hashlib.sha256(key.encode()).digest()


def required_scope(method: str, path: str) -> Literal["open", "client", "admin"]:
    """What a request needs: open (health), client, or admin for everything else."""
    if path in _OPEN_PATHS:
        return "open"
    for allowed_method, pattern in _CLIENT_ROUTES:
        if method == allowed_method and pattern.fullmatch(path):
            return "client"
    return "admin"


class Keys:
    """The configured keys as digests; :meth:`role_of` says what a presented key may do."""

    def __init__(self, admin: Iterable[str], client: Iterable[str]) -> None:
        self._admin = tuple(key_digest(k) for k in admin)
        self._client = tuple(key_digest(k) for k in client)

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> Keys:
        return cls(auth.admin_keys, auth.client_keys)

    @property
    def enabled(self) -> bool:
        return bool(self._admin or self._client)

    def role_of(self, presented: bytes) -> Role | None:
        """admin, client or None (unknown). Compares the digest with every configured one."""
        digest = hashlib.sha256(presented).digest()
        admin = client = False
        for known in self._admin:
            admin |= hmac.compare_digest(known, digest)
        for known in self._client:
            client |= hmac.compare_digest(known, digest)
        if admin:
            return "admin"
        return "client" if client else None


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of the one ``Authorization: Bearer`` header; None if absent or ambiguous.
    Its length is bounded by the server's header limit; any length is hashed the same way."""
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token


class Auth:
    """ASGI middleware: 401/403 from the headers alone, before routing or reading the body."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope.get("method", "GET"), scope["path"])
        if needed == "open":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        role = self.keys.role_of(token) if token is not None else None
        if role == "admin" or role == needed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if role is None:
            detail = "missing API key: send Authorization: Bearer <key>"
            challenge = b'Bearer realm="recserve"'
            if token is not None:
                detail = "unknown API key"
                challenge = b'Bearer realm="recserve", error="invalid_token"'
            await _refuse(send, 401, detail, challenge)
        else:
            await _refuse(
                send,
                403,
                "a client key may only get feeds and post events; this route needs an admin key",
                b'Bearer realm="recserve", error="insufficient_scope"',
            )


async def _refuse(send: Send, status: int, detail: str, challenge: bytes) -> None:
    await send_json(send, status, {"detail": detail}, [(b"www-authenticate", challenge)])


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``; any other name or address is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def unprotected_listen(settings: Settings) -> str | None:
    """Why ``recserve serve`` must not start with these settings, or None: without API keys
    it listens only on loopback, unless ``auth.allow_unauthenticated`` (Redis's protected
    mode)."""
    auth = settings.auth
    if auth.admin_keys or auth.client_keys or auth.allow_unauthenticated:
        return None
    if is_loopback(settings.host):
        return None
    return (
        f"refusing to listen on {settings.host!r} without API keys: anyone who reaches it could "
        "post items, take them down and read users. Configure keys in the TOML file's [auth] "
        "table (admin_keys = [...], client_keys = [...]; 'sha256:<hex>' keeps the key out of "
        "the file) or in RECSERVE_AUTH__ADMIN_KEYS / RECSERVE_AUTH__CLIENT_KEYS (JSON lists); "
        "or listen on 127.0.0.1; or, if something in front of the service authenticates, set "
        "auth.allow_unauthenticated = true (RECSERVE_AUTH__ALLOW_UNAUTHENTICATED=true)"
    )
