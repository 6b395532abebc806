"""recserve.service.settings: defaults < TOML file < environment < overrides; unknown keys fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from recserve.profiles import CoEngagementOptions
from recserve.service.engine import Engine
from recserve.service.settings import CoEngagementSettings, Settings, load_settings


def test_precedence_is_overrides_then_environment_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "recserve.toml"
    config.write_text('port = 9000\nhost = "127.0.0.2"\n[feed]\nmax_per_creator = 1\n')
    monkeypatch.setenv("RECSERVE_FEED__EXPLORE_SLOTS", "3")
    monkeypatch.setenv("RECSERVE_HOST", "127.0.0.3")
    settings = load_settings(config, port=9100)
    assert settings.port == 9100
    assert settings.host == "127.0.0.3"
    assert settings.feed.max_per_creator == 1  # from the file, beside the environment's value
    assert settings.feed.explore_slots == 3


@pytest.mark.parametrize(
    "text",
    [
        "prot = 9000\n",
        "[feed]\nmax_per_creater = 1\n",
        "[amplification]\ntiers = [{budget = 0}]\n",
        "[update_rule]\nweights = {wink = 1.0}\n",
        'media_url_template = "https://cdn/x"\n',
        '[[experiments]]\nname = "e"\narms = [{name = "a"}, {name = "a"}]\n',
        "[feed]\ndefault_n = 50\nmax_n = 10\n",
        "max_body_bytes = 65536\nmax_inflight_bytes = 65535\n",  # a full body could never fit
        "body_timeout_s = 0\n",
        "max_blocked_creators = 10001\n",
        "shutdown_grace_s = -1\n",
        "[co_engagement]\nneighbours = 1025\n",
        "[co_engagement]\nhistory = 0\n",
        "[co_engagement]\npositive_weight = 0\n",
        "[co_engagement]\nhalf_life_s = -1\n",
        "[co_engagement]\nhalf_life_s = nan\n",
        "[co_engagement]\nsize = 3\n",
    ],
)
def test_bad_settings_are_refused_at_load(tmp_path: Path, text: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValidationError):
        load_settings(config)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


def test_the_co_engagement_section_reaches_the_profiles(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        dims=8,
        impression_log=False,
        co_engagement=CoEngagementSettings(neighbours=16, history=8, half_life_s=3600),
    )
    engine = Engine(settings)
    engine.start()
    try:
        assert engine.store is not None
        assert engine.store.profiles.config.co_engagement == CoEngagementOptions(
            neighbours=16, history=8, positive_weight=0.5, half_life_seconds=3600.0
        )
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"snapshot_uri": "s3://b/p"}, "snapshot_uri needs catalog_stream"),
        ({"catalog_stream": "c"}, "catalog_stream needs dims"),
        ({"dims": 8, "catalog_stream": "c", "snapshot_uri": "https://b/p"}, "s3://bucket"),
    ],
)
def test_catalogue_snapshot_settings_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**values)  # type: ignore[arg-type]
