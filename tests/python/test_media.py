"""Media URLs: a template, CloudFront, and CloudFront signed URLs that verify with the key
pair's public key."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from recserve.media import MediaUrls


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
        private_key_file=path, ttl_s=3600,
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
