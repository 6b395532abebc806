"""API keys over HTTP (recserve.service.auth): every route's scope, sha256: keys, keys from the
environment and TOML, digests compared with hmac.compare_digest against every key, 401 before
the body is read, and ``recserve serve`` refusing a non-loopback address without keys (checked
with uvicorn's run replaced, so no test ever binds anything but 127.0.0.1)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import uvicorn
from fastapi import FastAPI
from http_server import free_port, item_batch, watch

from recserve import cli
from recserve.service import auth, server
from recserve.service.app import create_app
from recserve.service.auth import Keys, is_loopback, required_scope, unprotected_listen
from recserve.service.settings import Settings, load_settings

ADMIN = "admin-0123456789abcdef0123"
HASHED_ADMIN = "hashed-admin-0123456789abcdef"  # configured only as its sha256: form
CLIENT = "client-0123456789abcdef0123"
UNKNOWN = "unknown-0123456789abcdef012"
DIMS = 16


def sha256_form(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """uvicorn on a thread of this process, on 127.0.0.1; yields its base URL once ready."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the app was not ready in 60 s"
            time.sleep(0.05)
        yield url
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def keyed_settings(data_dir: Path, **more: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        dims=DIMS,
        auth={"admin_keys": [ADMIN, sha256_form(HASHED_ADMIN)], "client_keys": [CLIENT]},
        **more,
    )


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service with keys and a catalogue (posted with the admin key)."""
    app = create_app(keyed_settings(tmp_path_factory.mktemp("auth") / "data"))
    with running(app) as base:
        items = item_batch(40, seed=3) + item_batch(1, seed=4, prefix="gone")
        headers = {"Authorization": f"Bearer {ADMIN}"}
        response = httpx.post(f"{base}/v1/items", json={"items": items}, headers=headers)
        assert response.status_code == 200, response.text
        yield base


ITEM = item_batch(1, seed=5, prefix="new")[0]
# (method, path, body, scope): every route of the API, and some that are not (yet) routes.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/feed/u1", None, "client"),
    ("POST", "/v1/events", {"events": [watch("e1", "u1", "v1")]}, "client"),
    ("POST", "/v1/items", {"items": [ITEM]}, "admin"),
    ("GET", "/v1/items/v1", None, "admin"),
    ("DELETE", "/v1/items/gone0", None, "admin"),
    ("POST", "/v1/items/v1/review", {"decision": "reject", "reason": "spam"}, "admin"),
    ("GET", "/v1/review/queue", None, "admin"),
    ("GET", "/v1/feed/u1/explain?item_id=v1", None, "admin"),
    ("PUT", "/v1/users/u2", {"interests": ["t1"]}, "admin"),
    ("GET", "/v1/users/u1", None, "admin"),
    ("DELETE", "/v1/users/u3", None, "admin"),
    ("GET", "/v1/models", None, "admin"),
    ("POST", "/v1/models/builtin/activate", None, "admin"),
    ("GET", "/metrics", None, "admin"),
    ("GET", "/v1/experiments", None, "admin"),
    ("GET", "/openapi.json", None, "admin"),
    ("GET", "/docs", None, "admin"),
    ("HEAD", "/v1/feed/u1", None, "admin"),
    ("GET", "/v1/feed/u1/", None, "admin"),
    ("GET", "/v1/events", None, "admin"),
    ("POST", "/v1/feed/u1", None, "admin"),
]


def call(base: str, method: str, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.request(method, base + path, json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_each_route_needs_its_scope(
    url: str, method: str, path: str, body: Any, scope: str
) -> None:
    assert required_scope(method, path.partition("?")[0]) == scope
    for key in (None, UNKNOWN, ADMIN[:-1], f"{ADMIN} {ADMIN}"):
        response = call(url, method, path, body, key)
        assert response.status_code == 401, (key, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    client = call(url, method, path, body, CLIENT)
    if scope == "client":
        assert client.status_code in (200, 202), client.text
    else:
        assert client.status_code == 403, client.text
        assert "insufficient_scope" in client.headers["www-authenticate"]
    for key in (ADMIN, HASHED_ADMIN):  # admin keys may do everything, client routes included
        response = call(url, method, path, body, key)
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text


def test_health_is_open_and_the_scheme_is_case_insensitive(url: str) -> None:
    for path in ("/healthz", "/readyz"):
        assert httpx.get(url + path).status_code == 200
    response = httpx.get(url + "/v1/feed/u1", headers={"Authorization": f"bearer {CLIENT}"})
    assert response.status_code == 200
    basic = httpx.get(url + "/v1/feed/u1", headers={"Authorization": f"Basic {CLIENT}"})
    assert basic.status_code == 401
    two = httpx.get(
        url + "/v1/feed/u1",
        headers=[("Authorization", f"Bearer {CLIENT}"), ("Authorization", f"Bearer {ADMIN}")],
    )
    assert two.status_code == 401  # ambiguous: neither is taken
    long = httpx.get(url + "/v1/feed/u1", headers={"Authorization": "Bearer " + "k" * 8000})
    assert long.status_code == 401
    assert 'error="invalid_token"' in long.headers["www-authenticate"]  # unknown, not missing


def test_every_route_of_the_app_is_admin_unless_listed_as_open_or_client(tmp_path: Path) -> None:
    """Default deny: a route added later (DELETE /v1/users/{id}, experiments) needs admin.
    The routes are the app's own, from its OpenAPI schema."""
    app = create_app(keyed_settings(tmp_path / "data"))
    seen = set()
    for path, operations in app.openapi()["paths"].items():
        concrete = path.replace("{", "").replace("}", "")  # /v1/feed/{user_id} -> /v1/feed/user_id
        for method in operations:
            seen.add((method.upper(), path))
            expected = {
                ("GET", "/healthz"): "open",
                ("GET", "/readyz"): "open",
                ("GET", "/v1/feed/{user_id}"): "client",
                ("POST", "/v1/events"): "client",
            }.get((method.upper(), path), "admin")
            assert required_scope(method.upper(), concrete) == expected, (method, path)
    for route in [("GET", "/v1/feed/{user_id}"), ("POST", "/v1/events"),
                  ("GET", "/v1/feed/{user_id}/explain"), ("POST", "/v1/items"),
                  ("GET", "/metrics")]:
        assert route in seen
    assert len(seen) >= 13


def test_a_client_key_cannot_reach_an_admin_route_through_encoded_slashes(url: str) -> None:
    for path in ("/v1/feed/u1%2Fexplain?item_id=v1", "/v1/feed/..%2Fitems%2Fv1"):
        response = call(url, "GET", path, None, CLIENT)
        assert response.status_code in (403, 404), response.text


def test_sha256_keys_match_the_key_not_the_hash(url: str) -> None:
    assert call(url, "GET", "/v1/models", None, HASHED_ADMIN).status_code == 200
    hashed = sha256_form(HASHED_ADMIN)
    for wrong in (hashed, hashed.removeprefix("sha256:"), sha256_form(ADMIN)):
        assert call(url, "GET", "/v1/models", None, wrong).status_code == 401
    upper = "sha256:" + hashlib.sha256(CLIENT.encode()).hexdigest().upper()
    assert Keys([], [upper]).role_of(CLIENT.encode()) == "client"


def test_without_keys_auth_is_off(tmp_path: Path) -> None:
    with running(create_app(Settings(data_dir=tmp_path / "data", dims=DIMS))) as base:
        response = call(base, "POST", "/v1/items", {"items": [ITEM]}, None)
        assert response.status_code == 200
        assert call(base, "GET", "/v1/models", None, UNKNOWN).status_code == 200


def _raw_request(base: str, lines: list[str], timeout: float) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"items": [')
        try:
            return sock.recv(4096)
        except TimeoutError:
            return b""


def test_a_401_does_not_wait_for_the_body(url: str) -> None:
    """Headers announce 8 MB that never come: refused at once without a key or with a client
    key; with an admin key the app waits for the body (so the check can tell the difference)."""
    head = ["POST /v1/items HTTP/1.1", "Host: x", "Content-Type: application/json",
            "Content-Length: 8000000"]
    assert _raw_request(url, head, timeout=10).startswith(b"HTTP/1.1 401")
    with_client = [*head, f"Authorization: Bearer {CLIENT}"]
    assert _raw_request(url, with_client, timeout=10).startswith(b"HTTP/1.1 403")
    with_admin = [*head, f"Authorization: Bearer {ADMIN}"]
    assert _raw_request(url, with_admin, timeout=1.0) == b""  # still reading the body


def test_every_configured_key_is_compared_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    keys = Keys([ADMIN, sha256_form(HASHED_ADMIN)], [CLIENT, "client-2-0123456789abcdef"])
    for presented, role in ((ADMIN, "admin"), (CLIENT, "client"), (UNKNOWN, None)):
        calls.clear()
        assert keys.role_of(presented.encode()) == role
        assert len(calls) == 4  # every key, even after the first one matched
        digest = hashlib.sha256(presented.encode()).digest()
        assert all(b == digest and len(a) == 32 for a, b in calls)  # digests, not the keys


def test_keys_from_the_environment_and_from_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("RECSERVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECSERVE_AUTH__ADMIN_KEYS", f'["{sha256_form(ADMIN)}"]')
    monkeypatch.setenv("RECSERVE_AUTH__CLIENT_KEYS", f'["{CLIENT}"]')
    settings = load_settings()
    assert settings.auth.admin_keys == (sha256_form(ADMIN),)
    keys = Keys.from_settings(settings.auth)
    assert keys.role_of(ADMIN.encode()) == "admin"
    assert keys.role_of(CLIENT.encode()) == "client"
    assert ADMIN not in repr(settings)
    assert CLIENT not in repr(settings)

    monkeypatch.delenv("RECSERVE_AUTH__ADMIN_KEYS")
    monkeypatch.delenv("RECSERVE_AUTH__CLIENT_KEYS")
    config = tmp_path / "recserve.toml"
    config.write_text(f'[auth]\nadmin_keys = ["{ADMIN}"]\nallow_unauthenticated = true\n')
    from_file = load_settings(config)
    assert from_file.auth.admin_keys == (ADMIN,)
    assert from_file.auth.allow_unauthenticated


@pytest.mark.parametrize(
    ("admin", "client", "message"),
    [
        ([""], [], "16 to 256 characters"),
        (["short-key"], [], "16 to 256 characters"),
        (["x" * 257], [], "16 to 256 characters"),
        (["a key with spaces in it"], [], "printable ASCII"),
        (["tab\tkey-0123456789abcdef"], [], "printable ASCII"),
        (["sha256:" + "a" * 63], [], "64 hex digits"),
        (["sha256:" + "g" * 64], [], "64 hex digits"),
        (["sha256:"], [], "64 hex digits"),
        ([ADMIN], [ADMIN], "in both admin_keys and client_keys"),
        ([sha256_form(CLIENT)], [CLIENT], "in both admin_keys and client_keys"),
    ],
    ids=["empty", "short", "long", "space", "tab", "hex-63", "not-hex", "no-hex", "both",
         "both-hashed"],
)
def test_bad_key_configurations_are_refused_without_echoing_the_key(
    tmp_path: Path, admin: list[str], client: list[str], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message) as error:
        Settings(data_dir=tmp_path, auth={"admin_keys": admin, "client_keys": client})
    for key in admin + client:
        if len(key) >= 8:
            assert key not in str(error.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
     ("10.0.0.5", False), ("192.168.1.2", False), ("example.com", False),
     ("localhost.example.com", False), ("", False), ("128.0.0.1", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def no_binding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces uvicorn's run (nothing listens) and clears RECSERVE_* from the environment;
    the list records the hosts that would have been bound."""
    for name in [n for n in os.environ if n.startswith("RECSERVE_")]:
        monkeypatch.delenv(name)
    bound: list[str] = []

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        bound.append(self.config.host)

    monkeypatch.setattr(server._Server, "run", run)
    return bound


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_serve_refuses_a_public_address_without_keys_before_binding(
    tmp_path: Path, no_binding: list[str], capsys: pytest.CaptureFixture[str], host: str
) -> None:
    data_dir = tmp_path / "data"
    argv = ["serve", "--host", host, "--port", "8000", "--data-dir", str(data_dir)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    for words in ("[auth]", "RECSERVE_AUTH__ADMIN_KEYS", "RECSERVE_AUTH__CLIENT_KEYS",
                  "allow_unauthenticated"):
        assert words in err
    assert no_binding == []
    assert not data_dir.exists()  # refused before the engine touched anything
    with pytest.raises(ValueError, match="without API keys"):  # serve() itself refuses too
        server.serve(Settings(host=host, data_dir=data_dir))
    assert no_binding == []


def test_serve_listens_beyond_loopback_with_keys_or_when_allowed(
    tmp_path: Path, no_binding: list[str]
) -> None:
    config = tmp_path / "keys.toml"
    config.write_text(f'[auth]\nclient_keys = ["{CLIENT}"]\n')
    base = ["serve", "--port", "8000", "--data-dir", str(tmp_path / "a")]
    assert cli.main([*base, "--host", "0.0.0.0", "--config", str(config)]) == 0
    allowed = tmp_path / "allowed.toml"
    allowed.write_text("[auth]\nallow_unauthenticated = true\n")
    assert cli.main([*base, "--host", "10.1.2.3", "--config", str(allowed)]) == 0
    assert cli.main([*base, "--host", "127.0.0.1"]) == 0
    assert no_binding == ["0.0.0.0", "10.1.2.3", "127.0.0.1"]
    assert unprotected_listen(Settings(host="localhost")) is None
