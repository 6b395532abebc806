"""Media URLs: a template, CloudFront, and CloudFront signed URLs that verify with the key
pair's public key; with signing, only media keys under ``allowed_prefixes`` and of a plain
shape, checked by the items route too (over HTTP here, to reuse the key pair)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from recserve.media import MediaUrls
from recserve.service.app import create_app
from recserve.service.settings import CloudFrontSettings, Settings


def _cloudfront_b64decode(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "=").replace("~", "/"))


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "cf.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key.public_key()


def test_template_and_unsigned_cloudfront_urls() -> None:
    assert MediaUrls("https://cdn.example/{media_key}.mp4").url("a/b") == "https://cdn.example/a/b.mp4"
    cloudfront = MediaUrls(cloudfront_domain="d111.cloudfront.net")
    assert cloudfront.url("videos/a b.mp4") == "https://d111.cloudfront.net/videos/a%20b.mp4"


def test_signed_urls_carry_a_canned_policy_signature_that_verifies(
    key_file: tuple[Path, rsa.RSAPublicKey],
) -> None:
    path, public = key_file
    media = MediaUrls(
        cloudfront_domain="d111.cloudfront.net", key_pair_id="K2JCJMDEHXQW5F",
        private_key_file=path, ttl_s=3600, allowed_prefixes=("videos/",),
    )
    url = media.url("videos/v1.mp4", now=1_700_000_000)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["Key-Pair-Id"] == "K2JCJMDEHXQW5F"
    expires = int(query["Expires"])
    assert 1_700_000_000 + 1800 <= expires <= 1_700_000_000 + 3600
    resource = f"{parts.scheme}://{parts.netloc}{parts.path}"
    policy = json.dumps(
        {"Statement": [{"Resource": resource,
                        "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
        separators=(",", ":"),
    ).encode()
    public.verify(_cloudfront_b64decode(query["Signature"]), policy, padding.PKCS1v15(),
                  hashes.SHA1())  # raises if the signature is wrong
    assert media.url("videos/v1.mp4", now=1_700_000_100) == url  # reused within the period
    assert media.url("videos/v1.mp4", now=1_700_000_000 + 3600) != url


def test_half_a_signing_configuration_is_refused(key_file: tuple[Path, rsa.RSAPublicKey]) -> None:
    with pytest.raises(ValueError, match="both key_pair_id and private_key_file"):
        MediaUrls(cloudfront_domain="d.cloudfront.net", key_pair_id="K")
    with pytest.raises(ValueError, match="need cloudfront_domain"):
        MediaUrls(key_pair_id="K", private_key_file=key_file[0])


def signing(path: Path, prefixes: tuple[str, ...] = ("public/",)) -> MediaUrls:
    return MediaUrls(
        cloudfront_domain="d111.cloudfront.net", key_pair_id="K2JCJMDEHXQW5F",
        private_key_file=path, allowed_prefixes=prefixes,
    )


def test_signing_needs_allowed_prefixes(key_file: tuple[Path, rsa.RSAPublicKey]) -> None:
    with pytest.raises(ValueError, match="signed URLs need cloudfront.allowed_prefixes"):
        MediaUrls(
            cloudfront_domain="d.cloudfront.net", key_pair_id="K", private_key_file=key_file[0]
        )
    with pytest.raises(pydantic.ValidationError, match="need cloudfront.allowed_prefixes"):
        CloudFrontSettings(domain="d.cloudfront.net", key_pair_id="K", private_key_file=key_file[0])
    for bad in ("", "/public/", "/", "public/../", "a/./", "public//", "pub?lic/"):
        with pytest.raises(pydantic.ValidationError, match=r"allowed_prefixes\[1\]"):
            CloudFrontSettings(allowed_prefixes=("ok/", bad))
    CloudFrontSettings(allowed_prefixes=("videos/", "public"))  # no signing: a plain restriction


BAD_KEYS = [
    "private/payroll-2026.mp4",  # the case: outside the prefix
    "private/../payroll",
    "public/../private/payroll",  # under the prefix as a string, not as a path
    "public/./x.mp4",
    "public//x.mp4",
    "public/",
    "/public/x.mp4",
    "public/x.mp4\n",
    "public/x\x00.mp4",
    "public/x\x7f.mp4",
    "public/x\x85.mp4",
    "public/x.mp4?response-content-type=text/html",
    "public/x.mp4#f",
    "public\\..\\private\\payroll",
    "publicity/x.mp4",
    "",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_with_signing_a_key_outside_the_prefixes_or_of_an_odd_shape_is_refused(
    key_file: tuple[Path, rsa.RSAPublicKey], key: str
) -> None:
    media = signing(key_file[0])
    with pytest.raises(ValueError, match="outside cloudfront.allowed_prefixes|has|starts|empty"):
        media.check_key(key)
    if key:
        assert "Signature=" not in media.url(key)  # never signed, however it was stored


def test_keys_under_the_prefixes_pass_and_nothing_is_checked_without_a_restriction(
    key_file: tuple[Path, rsa.RSAPublicKey],
) -> None:
    media = signing(key_file[0], ("public/", "trailers/"))
    for key in ("public/a.mp4", "public/dir/a b.mp4", "public/..x/a.mp4", "trailers/t.mp4"):
        media.check_key(key)
        assert "Signature=" in media.url(key)
    plain = MediaUrls(cloudfront_domain="d111.cloudfront.net")
    for key in BAD_KEYS:
        plain.check_key(key)  # no signing, no prefixes: today's behaviour
    restricted = MediaUrls(allowed_prefixes=("public/",))  # prefixes without signing apply too
    with pytest.raises(ValueError, match="outside"):
        restricted.check_key("private/payroll-2026.mp4")


def item(item_id: str, media_key: str | None) -> dict[str, object]:
    out: dict[str, object] = {
        "id": item_id, "embedding": [1.0, 0.5, 0.0, 0.25], "creator_id": "c1",
        "duration_ms": 15_000,
    }
    if media_key is not None:
        out["media_key"] = media_key
    return out


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[httpx.Client]:
    """The app under uvicorn on a thread, on 127.0.0.1; a client once /readyz says 200."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_http_items_with_a_refused_media_key_are_422_and_nothing_is_stored(
    key_file: tuple[Path, rsa.RSAPublicKey], tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", dims=4,
        cloudfront={"domain": "d111.cloudfront.net", "key_pair_id": "K2JCJMDEHXQW5F",
                    "private_key_file": key_file[0], "allowed_prefixes": ["public/"]},
    )
    with serving(settings) as client:
        for i, key in enumerate(BAD_KEYS):
            if not key:
                continue  # the schema's min_length answers that one
            batch = [item("ok", "public/ok.mp4"), item(f"bad{i}", key)]
            response = client.post("/v1/items", json={"items": batch})
            assert response.status_code == 422, (key, response.text)
            assert "items[1].media_key" in response.json()["detail"]
            assert key not in response.text  # not echoed
        response = client.post("/v1/items", json={"items": [item("private/payroll.mp4", None)]})
        assert response.status_code == 422
        assert "items[0].media_key: missing" in response.json()["detail"]
        assert client.get("/v1/items/ok").status_code == 404  # nothing of those batches

        ok = client.post("/v1/items", json={"items": [item("ok", "public/ok.mp4")]})
        assert ok.status_code == 200
        page = client.get("/v1/feed/u1").json()
        assert [entry["item_id"] for entry in page["items"]] == ["ok"]
        assert page["items"][0]["url"].startswith("https://d111.cloudfront.net/public/ok.mp4?")
        assert "Signature=" in page["items"][0]["url"]
