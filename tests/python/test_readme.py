"""The README says what a deployer needs about keys and media, and links only to files that a
clone of the repository has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recserve.service.settings import AuthSettings, CloudFrontSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="not run from a checkout")


def section(text: str, title: str) -> str:
    start = text.index(f"\n### {title}\n")
    end = text.index("\n#", start + 1)
    return text[start:end]


def test_authentication_comes_right_before_configuration_and_says_what_a_deployer_needs() -> None:
    text = README.read_text()
    headings = re.findall(r"(?m)^#{2,3} .*$", text)
    assert headings[headings.index("### Configuration") - 1] == "### Authentication and deployment"
    auth = section(text, "Authentication and deployment")
    for words in (
        "`GET /v1/feed/{user}`", "`POST /v1/events`", "`/metrics`", "`/healthz`", "`/readyz`",
        "explain", "401", "403", "WWW-Authenticate: Bearer", "[auth]",
        "RECSERVE_AUTH__ADMIN_KEYS", "RECSERVE_AUTH__CLIENT_KEYS", "sha256:",
        'printf %s "$KEY" | sha256sum', "loopback", "allow_unauthenticated", "TLS",
        "rate limits",
    ):
        assert words in auth, words


def test_every_auth_and_cloudfront_setting_is_documented() -> None:
    text = README.read_text()
    for prefix, model in (("auth", AuthSettings), ("cloudfront", CloudFrontSettings)):
        for name in model.model_fields:
            assert f"`{prefix}.{name}`" in text, f"{prefix}.{name}"


def test_no_links_outside_the_repository() -> None:
    docs = [README, *sorted((ROOT / "docs").glob("**/*.md"))]
    for path in docs:
        for target in re.findall(r"\]\(([^)]+)\)", path.read_text()):
            if re.match(r"[a-z]+:|#", target):
                continue  # a URL or an anchor
            assert not target.startswith("../shared"), (path.name, target)
            resolved = (path.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(ROOT), (path.name, target)
            assert resolved.exists(), (path.name, target)
