"""The service's configuration: defaults, then a TOML file, then ``RECSERVE_*`` environment
variables (nested settings with ``__``: ``RECSERVE_FEED__MAX_PER_CREATOR=1``), then the
command line. Unknown keys are errors, so a misspelt setting never goes unnoticed.

See the README's "Configuration" section for every setting and its default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from recserve.amplify import AmplifyConfig
from recserve.feed.config import FeedConfig
from recserve.media import check_prefixes
from recserve.profiles import CoEngagementOptions, UpdateRule
from recserve.service.auth import key_digest
from recserve.service.catalogue_snapshots import parse_uri

__all__ = [
    "Arm",
    "AuthSettings",
    "CloudFrontSettings",
    "CoEngagementSettings",
    "Experiment",
    "ExposureSettings",
    "KinesisSettings",
    "Settings",
    "load_settings",
]


class CoEngagementSettings(BaseModel):
    """The item-to-item co-engagement index (docs/co-engagement.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    neighbours: int = Field(
        default=64,
        ge=0,
        le=1024,
        description="co-engaged items kept per item, the heaviest (0: no index, no recent "
        "positives)",
    )
    history: int = Field(
        default=32,
        ge=1,
        le=256,
        description="recent distinct positives kept per user; a new positive pairs with each",
    )
    positive_weight: float = Field(
        default=0.5,
        gt=0.0,
        allow_inf_nan=False,
        description="the smallest engagement weight that counts as a positive (default rule: a "
        "completed watch 1.0, a like 0.5, a half watch about 0.29)",
    )
    half_life_s: float = Field(
        default=0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="half-life of co-engagement weights and counts in event time (0: never decay)",
    )

    def options(self) -> CoEngagementOptions:
        """What ``ProfilesConfig.co_engagement`` takes."""
        return CoEngagementOptions(
            neighbours=self.neighbours,
            history=self.history,
            positive_weight=self.positive_weight,
            half_life_seconds=self.half_life_s,
        )


class ExposureSettings(BaseModel):
    """Served and served-not-viewed counters per item (recserve.exposure)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    view_timeout_s: float = Field(
        default=300.0,
        ge=1.0,
        le=86_400.0,
        allow_inf_nan=False,
        description="a served item with no event from its user within this is served-not-viewed",
    )
    max_pending: int = Field(
        default=1_000_000,
        ge=1_000,
        le=100_000_000,
        description="served items waiting for their window; past it the oldest settle early",
    )


class KinesisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_id: str | None = Field(
        default=None, description="this replica's name in the lease table; None: host-pid-random"
    )
    lease_duration_s: float = Field(
        default=10.0, gt=0, description="a lease whose counter stands still this long is free"
    )
    renew_interval_s: float = Field(default=2.0, gt=0, description="lease renewal period")
    poll_interval_s: float = Field(
        default=0.2, ge=0.2, description="an idle shard is read again after this (5 calls/s/shard)"
    )
    max_records: int = Field(default=10_000, ge=1, le=10_000, description="per GetRecords call")
    foreign_ttl_s: float = Field(
        default=5.0, ge=0, description="a user of another replica's shard is read again after"
    )
    record_format: Literal["binary", "json"] = Field(
        default="binary", description="how POST /v1/events writes events to the stream"
    )

    @model_validator(mode="after")
    def _renew_within_lease(self) -> KinesisSettings:
        if self.renew_interval_s * 2 > self.lease_duration_s:
            raise ValueError("renew_interval_s must be at most half of lease_duration_s")
        return self


class CatalogStreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval_s: float = Field(
        default=1.0,
        ge=0.2,
        le=60,
        description="the catalogue stream is read again after this when drained (5 reads/s "
        "per shard, shared by every replica)",
    )
    write_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a catalogue write waits this long to be applied here; then 503 (it is on "
        "the stream and applies later)",
    )
    snapshots_kept: int = Field(default=2, ge=1, le=100, description="S3 snapshots kept")


class CloudFrontSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str | None = Field(
        default=None, description="serve media as https://<domain>/<media_key>; None: template"
    )
    key_pair_id: str | None = Field(default=None, description="sign URLs with this key pair")
    private_key_file: Path | None = Field(default=None, description="its RSA private key (PEM)")
    signed_url_ttl_s: float = Field(default=3600.0, gt=0, description="a signed URL's lifetime")
    allowed_prefixes: tuple[str, ...] = Field(
        default=(),
        max_length=1000,
        description="media keys that may be served start with one of these; required with "
        "signing (key_pair_id), which refuses to start without them",
    )

    @model_validator(mode="after")
    def _prefixes(self) -> CloudFrontSettings:
        check_prefixes(self.allowed_prefixes, signing=self.key_pair_id is not None)
        return self


class AuthSettings(BaseModel):
    """API keys (recserve.service.auth): a key in both lists is an error, not a silent admin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin_keys: tuple[str, ...] = Field(
        default=(), max_length=1000, repr=False, description="keys that may do everything"
    )
    client_keys: tuple[str, ...] = Field(
        default=(), max_length=1000, repr=False, description="keys for feeds and events only"
    )
    allow_unauthenticated: bool = Field(
        default=False, description="with no keys, listen on a non-loopback address anyway"
    )

    @field_validator("admin_keys", "client_keys")
    @classmethod
    def _well_formed(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for i, key in enumerate(keys):
            try:
                key_digest(key)
            except ValueError as error:  # the message never quotes the key
                raise ValueError(f"key [{i}]: {error}") from None
        return keys

    @model_validator(mode="after")
    def _one_scope_per_key(self) -> AuthSettings:
        both = {key_digest(k) for k in self.admin_keys} & {key_digest(k) for k in self.client_keys}
        if both:
            raise ValueError(
                f"{len(both)} key(s) are in both admin_keys and client_keys: give each key one "
                "scope (an admin key may already use the client routes)"
            )
        return self


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weight: float = Field(
        default=1.0, gt=0, description="share of users, relative to the other arms"
    )
    model: str | None = Field(default=None, description="model version; None: the active model")
    blend: dict[str, float] | None = Field(
        default=None, description="head weights; None: the model's"
    )


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arms: tuple[Arm, ...] = Field(min_length=1)

    @field_validator("arms")
    @classmethod
    def _distinct(cls, arms: tuple[Arm, ...]) -> tuple[Arm, ...]:
        names = [arm.name for arm in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        return arms


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECSERVE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,  # errors name the setting, never echo it (API keys)
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("recserve-data")
    dims: int | None = Field(default=None, ge=1, description="None: from the first items posted")
    models_dir: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="a directory or s3://bucket/prefix; None: <data_dir>/models",
    )
    model_poll_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="how often models_dir's serving.json is read again (activations elsewhere)",
    )
    model: str | None = Field(
        default=None, description="model to activate at start; None: as last run"
    )
    user_capacity: int = Field(default=1 << 20, ge=16)
    item_capacity: int = Field(default=1 << 20, ge=16)
    max_body_bytes: int = Field(default=8 << 20, ge=1024)
    max_inflight: int = Field(
        default=256, ge=1, description="requests at once before 503 Retry-After"
    )
    # Bytes, not requests, are what fill memory: a parsed JSON body takes 4-6 times its size.
    max_inflight_bytes: int = Field(
        default=32 << 20,
        ge=1024,
        description="body bytes of the requests in flight (a declared length counts up front) "
        "before 503 Retry-After; at least max_body_bytes",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="a body not whole this long after its headers: 408"
    )
    max_interests: int = Field(
        default=256, ge=0, le=10_000, description="interests a user may set; over it 422"
    )
    max_blocked_creators: int = Field(
        default=256, ge=0, le=10_000, description="creators a user may block; over it 422"
    )
    max_clock_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="an event's ts or an item's created_at further ahead of the wall clock is "
        "422, on either clock",
    )
    shutdown_grace_s: float = Field(
        default=5.0,
        ge=0,
        description="after SIGTERM, /readyz says 503 this long while the listener still accepts "
        "and requests are served (load balancers drain); then the drain (shutdown_timeout_s)",
    )
    retry_after_s: int = Field(default=1, ge=1)
    # A page releases the GIL for its whole assembly (recserve/feed/pipeline.hpp), so threads
    # build pages on several cores; on 2 cores shared with the load generator, the thread hop
    # cost more than it gave (bench/README.md), so the default stays on the event loop.
    feed_threads: int = Field(
        default=0, ge=0, description="threads assembling feeds; 0: on the event loop"
    )
    # A simulation or replay runs on its events' time and must give the same feeds however fast
    # the machine is; a service runs on the wall clock (recserve.service.clock).
    clock: Literal["wall", "events"] = Field(
        default="wall",
        description="'events': now is the newest ts or created_at posted (simulation, replay)",
    )
    index_threads: int = Field(
        default=0, ge=0, description="threads adding items to the ANN; 0: all, 1: same graph"
    )
    media_url_template: str = "/media/{media_key}"
    cloudfront: CloudFrontSettings = CloudFrontSettings()
    auth: AuthSettings = AuthSettings()
    snapshot_interval_s: float = Field(default=300.0, gt=0)
    erasure_delay_s: float = Field(
        default=60.0,
        gt=0,
        description="an erased user's bytes are gone from the data directory within this",
    )
    shutdown_timeout_s: float = Field(default=15.0, gt=0)
    impression_log: bool = True
    feed: FeedConfig = FeedConfig()
    co_engagement: CoEngagementSettings = CoEngagementSettings()
    exposure: ExposureSettings = ExposureSettings()
    amplification: dict[str, Any] = Field(default_factory=dict)
    update_rule: dict[str, Any] = Field(default_factory=dict)
    experiments: tuple[Experiment, ...] = ()
    # Scale-out: events from a Kinesis stream, user state in DynamoDB (the README's "AWS").
    events_source: Literal["http", "kinesis"] = "http"
    kinesis_stream: str | None = None
    state_store: Literal["embedded", "dynamodb"] = "embedded"
    dynamodb_table_prefix: str = Field(default="recserve-", min_length=1, max_length=200)
    create_tables: bool = Field(
        default=True, description="create the lease and user tables if missing"
    )
    kinesis: KinesisSettings = KinesisSettings()
    # One catalogue across replicas: items, takedowns and reviews through a one-shard stream,
    # a new replica starting from the newest S3 snapshot (recserve.service.catalogue_sync).
    catalog_stream: str | None = Field(default=None, min_length=1, max_length=128)
    snapshot_uri: str | None = Field(
        default=None, max_length=1024, description="s3://bucket/prefix: the catalogue snapshots"
    )
    catalog: CatalogStreamSettings = CatalogStreamSettings()

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://"):
            parse_uri(value)  # ValueError naming the expected form
        return value

    @model_validator(mode="after")
    def _catalogue(self) -> Settings:
        if self.catalog_stream is not None and self.dims is None:
            # Else a replica no one posts to would never open its store to read the stream.
            raise ValueError("catalog_stream needs dims, so each replica reads it from the start")
        if self.snapshot_uri is not None:
            if self.catalog_stream is None:
                raise ValueError("snapshot_uri needs catalog_stream: a snapshot is a place on it")
            parse_uri(self.snapshot_uri)  # ValueError naming the expected form
        return self

    @model_validator(mode="after")
    def _sources(self) -> Settings:
        if self.events_source == "kinesis" and not self.kinesis_stream:
            raise ValueError("events_source = kinesis needs kinesis_stream")
        if self.state_store == "dynamodb" and self.events_source != "kinesis":
            # Replicas agree on event sequence numbers only when the stream assigns them.
            raise ValueError("state_store = dynamodb needs events_source = kinesis")
        return self

    @model_validator(mode="after")
    def _byte_budget(self) -> Settings:
        if self.max_inflight_bytes < self.max_body_bytes:  # else a body of the limit never fits
            raise ValueError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes})"
            )
        return self

    @field_validator("amplification")
    @classmethod
    def _amplification(cls, value: dict[str, Any]) -> dict[str, Any]:
        AmplifyConfig.from_dict(value)  # raises naming the bad setting
        return value

    @field_validator("update_rule")
    @classmethod
    def _rule(cls, value: dict[str, Any]) -> dict[str, Any]:
        UpdateRule.from_dict(value)
        return value

    @field_validator("media_url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{media_key}" not in value:
            raise ValueError("media_url_template must contain {media_key}")
        return value

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, value: tuple[Experiment, ...]) -> tuple[Experiment, ...]:
        names = [e.name for e in value]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names repeat: {names}")
        return value

    _config_file: ClassVar[Path | None] = None  # set on a subclass by load_settings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = cast(type[Settings], settings_cls)._config_file
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    def resolved_models_dir(self) -> str:
        return self.models_dir if self.models_dir is not None else str(self.data_dir / "models")


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file ``config`` (if given), the environment and ``overrides``
    (highest first: overrides, environment, file, defaults)."""
    if config is None:
        return Settings(**overrides)
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such configuration file")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(title=f"settings in {path}")  # errors name the file
        _config_file: ClassVar[Path | None] = path

    try:
        return _FromFile(**overrides)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from error
