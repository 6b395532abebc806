"""Where a served item's video is: its media key (an S3 object key) turned into a URL, by a
template or through CloudFront, optionally as a signed URL (botocore's CloudFrontSigner with a
canned policy, RSA-SHA1 as CloudFront requires).

Signing costs an RSA signature (about a millisecond), so a signed URL is reused until half its
lifetime is gone: expiry times are rounded up to a grid of ``ttl_s / 2``, and pages served in
the same half-period share the URL of an item.

A signed URL opens a private object to whoever holds it, so with signing on the keys that may
be signed are limited: ``allowed_prefixes`` is required, and :meth:`MediaUrls.check_key`
refuses a key outside them or one that could be read as another path (``.``/``..`` segments,
a leading ``/``, empty segments, a backslash, control characters, ``?`` or ``#``). The items
route runs the check before anything is stored; ``url`` never signs a key that fails it.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["MediaUrls", "check_prefixes", "media_key_problem"]


def media_key_problem(key: str) -> str | None:
    """Why ``key`` could name another object than it seems to (never quoting it), or None."""
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "starts with /"
    if any(unicodedata.category(c) == "Cc" for c in key):
        return "has a control character"
    for c in "?#\\":
        if c in key:
            return f"has {c!r}"
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        return "has an empty, . or .. path segment"
    return None


def check_prefixes(prefixes: Sequence[str], *, signing: bool) -> None:
    """ValueError unless ``prefixes`` are well-formed, and given when URLs are signed."""
    if signing and not prefixes:
        raise ValueError(
            "signed URLs need cloudfront.allowed_prefixes: the key prefixes that may be signed, "
            'e.g. ["videos/"] (a signed URL opens the object to anyone who has it)'
        )
    for i, prefix in enumerate(prefixes):
        if prefix.startswith("/"):
            problem: str | None = "starts with /"
        else:  # a prefix is a key's beginning: "videos/" ends with an empty segment
            problem = media_key_problem(prefix.removesuffix("/"))
        if problem is not None:
            raise ValueError(f"cloudfront.allowed_prefixes[{i}] {problem}")


class MediaUrls:
    def __init__(
        self,
        template: str = "/media/{media_key}",
        *,
        cloudfront_domain: str | None = None,
        key_pair_id: str | None = None,
        private_key_file: str | Path | None = None,
        ttl_s: float = 3600.0,
        allowed_prefixes: Sequence[str] = (),
    ) -> None:
        if (key_pair_id is None) != (private_key_file is None):
            raise ValueError("signed URLs need both key_pair_id and private_key_file")
        if key_pair_id is not None and cloudfront_domain is None:
            raise ValueError("signed URLs need cloudfront_domain")
        check_prefixes(allowed_prefixes, signing=key_pair_id is not None)
        self.allowed_prefixes = tuple(allowed_prefixes)
        self.template = template
        self.domain = cloudfront_domain
        self.ttl_s = ttl_s
        self._signer: Any = None
        self._signed: dict[str, tuple[int, str]] = {}  # media key -> (expires, url)
        if key_pair_id is not None and private_key_file is not None:
            self._signer = _signer(key_pair_id, Path(private_key_file).read_bytes())

    @property
    def restricted(self) -> bool:
        """Whether media keys are checked: with signing on, or prefixes configured."""
        return self._signer is not None or bool(self.allowed_prefixes)

    def check_key(self, media_key: str) -> None:
        """ValueError (naming the rule, never quoting the key) when this key may not be served:
        outside ``allowed_prefixes``, or of a shape that could name another object. Every key
        passes when there is no restriction (no signing, no prefixes)."""
        if not self.restricted:
            return
        problem = media_key_problem(media_key)
        if problem is not None:
            raise ValueError(problem)
        if not media_key.startswith(tuple(self.allowed_prefixes)):
            raise ValueError("is outside cloudfront.allowed_prefixes")

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
        try:  # items stored before the prefixes were set, or not through the items route
            self.check_key(media_key)
        except ValueError:
            return plain  # unsigned: CloudFront refuses it, nothing private is opened
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
