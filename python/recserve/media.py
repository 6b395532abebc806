"""Where a served item's video is: its media key (an S3 object key) turned into a URL, by a
template or through CloudFront, optionally as a signed URL (botocore's CloudFrontSigner with a
canned policy, RSA-SHA1 as CloudFront requires).

Signing costs an RSA signature (about a millisecond), so a signed URL is reused until half its
lifetime is gone: expiry times are rounded up to a grid of ``ttl_s / 2``, and pages served in
the same half-period share the URL of an item.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["MediaUrls"]


class MediaUrls:
    def __init__(
        self,
        template: str = "/media/{media_key}",
        *,
        cloudfront_domain: str | None = None,
        key_pair_id: str | None = None,
        private_key_file: str | Path | None = None,
        ttl_s: float = 3600.0,
    ) -> None:
        if (key_pair_id is None) != (private_key_file is None):
            raise ValueError("signed URLs need both key_pair_id and private_key_file")
        if key_pair_id is not None and cloudfront_domain is None:
            raise ValueError("signed URLs need cloudfront_domain")
        self.template = template
        self.domain = cloudfront_domain
        self.ttl_s = ttl_s
        self._signer: Any = None
        self._signed: dict[str, tuple[int, str]] = {}  # media key -> (expires, url)
        if key_pair_id is not None and private_key_file is not None:
            self._signer = _signer(key_pair_id, Path(private_key_file).read_bytes())

    def url(self, media_key: str, now: float | None = None) -> str:
        if self.domain is None:
            return self.template.format(media_key=media_key)
        plain = f"https://{self.domain}/{quote(media_key)}"
        if self._signer is None:
            return plain
        now = time.time() if now is None else now
        half = self.ttl_s / 2
        expires = int(math.ceil((now + half) / half) * half)  # at least ttl/2 ahead
        cached = self._signed.get(media_key)
        if cached is not None and cached[0] == expires:
            return cached[1]
        signed = str(
            self._signer.generate_presigned_url(
                plain, date_less_than=dt.datetime.fromtimestamp(expires, tz=dt.UTC)
            )
        )
        if len(self._signed) > 100_000:
            self._signed.clear()
        self._signed[media_key] = (expires, signed)
        return signed


def _signer(key_pair_id: str, pem: bytes) -> Any:
    from botocore.signers import CloudFrontSigner  # the aws extra
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a CloudFront key pair's private key is an RSA key")

    def sign(message: bytes) -> bytes:
        return key.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303  (CloudFront's)

    return CloudFrontSigner(key_pair_id, sign)
