"""The recserve scale-out deployment as one CDK stack (README, "Scale-out on AWS").

What it makes: the Kinesis stream of events and the one-shard catalogue stream (README, "One
catalogue across replicas"); the two DynamoDB tables that ``recserve serve`` would make with
``create_tables = true`` (the same key schema and on-demand billing: see ``recserve/_aws.py``,
``ingest/leases.py`` and ``store/dynamodb.py``); a media bucket behind a CloudFront
distribution (origin access control, signed URLs through a key group); a snapshots bucket,
where the replicas keep the catalogue snapshots; a VPC; an Application Load Balancer whose
target group checks ``/readyz``; and an Auto Scaling group of Graviton instances that install
the recserve wheel and run ``recserve serve`` under systemd. The instance role grants the
README's IAM actions on these resources (the snapshots on their prefix only), plus aborting a
failed multipart upload of a snapshot, reading the wheel and the three SSM parameters (API
keys, CloudFront private key), and nothing else.

Everything is configured through CDK context (``cdk.json`` or ``cdk deploy -c key=value``);
:meth:`StackConfig.from_context` checks it and names the key that is wrong or missing.
The stack is environment-agnostic: synthesis looks nothing up, so it runs without an account.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aws_cdk as cdk
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

__all__ = ["ConfigError", "RecserveStack", "StackConfig"]

#: The tables and their partition keys, as ``ensure_table`` makes them (name suffix, key, type).
TABLES = (("leases", "shard_id", "S"), ("users", "user", "N"))

#: The README's instance-role actions ("Scale-out on AWS", IAM), without CreateTable: the
#: stack makes the tables and the service runs with ``create_tables = false``.
KINESIS_ACTIONS = (
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:PutRecords",
)
#: With ``catalog_stream``: the catalogue stream's reader (every replica reads it whole) and
#: writer (``POST /v1/items`` and the like put one record at a time).
CATALOGUE_STREAM_ACTIONS = (
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:PutRecord",
)
#: With ``snapshot_uri``, on the snapshot prefix's objects: download (GetObject; boto3's
#: download_file also sends HeadObject, which GetObject allows), upload (PutObject, which also
#: allows the Create/UploadPart/Complete calls of boto3's multipart uploads: index.rsi and
#: vectors.bin pass its 8 MB threshold from ~30,000 items at dims 64), pruning (DeleteObjects takes
#: s3:DeleteObject for each key). AbortMultipartUpload is beyond the README's list: boto3 sends
#: it when an upload fails, and without it the parts stay (and are billed) until the bucket's
#: lifecycle rule removes them.
SNAPSHOT_OBJECT_ACTIONS = (
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:PutObject",
)
DYNAMODB_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)

#: Shutdown: the ALB marks a target unhealthy after interval × unhealthy threshold (10 s), which
#: must stay below ``shutdown_grace_s`` (README, "Shutdown"), during which /readyz says 503.
HEALTH_INTERVAL_S = 5
HEALTH_UNHEALTHY_THRESHOLD = 2
SHUTDOWN_GRACE_S = 15

#: ``snapshot_uri`` is s3://<snapshots bucket>/<SNAPSHOT_PREFIX>; recserve writes under
#: ``<SNAPSHOT_PREFIX>/catalogue/`` (recserve.service.catalogue_snapshots).
SNAPSHOT_PREFIX = "recserve"
#: The catalogue stream's retention. A replica that starts from an S3 snapshot reads the stream
#: on from the snapshot's sequence number, so every record after the newest snapshot must still
#: be on the stream: retention must outlast snapshot_interval_s (300 s by default) plus any
#: stretch in which snapshots fail (recserve_catalog_snapshots_total{outcome="failed"}, S3
#: unreachable, no role holder). 24 h would leave a day to notice and fix that; 7 days leaves a
#: week, for a little more than the shard itself costs (extended retention is billed per
#: shard-hour, and this stream has one shard).
CATALOGUE_RETENTION = cdk.Duration.days(7)
#: Deleted snapshots and replaced pointers stay as noncurrent versions this long: an undo for a
#: bad prune or pointer (the role may DeleteObject, not DeleteObjectVersion). A snapshot every
#: 5 minutes makes 288 noncurrent copies a day, so keep it short.
CATALOGUE_NONCURRENT_DAYS = 1

SERVICE_USER = "recserve"
DATA_DIR = "/var/lib/recserve"
CONFIG_FILE = "/etc/recserve/recserve.toml"
ENV_FILE = "/etc/recserve/aws.env"
START_SCRIPT = "/opt/recserve/bin/recserve-start"
VENV = "/opt/recserve/venv"
WHEEL_DIR = "/opt/recserve/wheels"

_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")
_GRAVITON = re.compile(r"[a-z]+[0-9]+g[a-z]*\.[a-z0-9]+")  # c7g.large, r7g.xlarge, c7gn.2xlarge
_PARAMETER = re.compile(r"/?[A-Za-z0-9_.\-/]{1,1011}")
_WHEEL = re.compile(r"recserve-[^/]+-(manylinux|linux)[^/]*_aarch64\.whl")


class ConfigError(ValueError):
    """A context value is missing or wrong; the message names the context key."""


@dataclass(frozen=True)
class StackConfig:
    """The stack's parameters (context keys have the same names)."""

    name: str = "recserve"
    instance_type: str = "c7g.large"
    min_capacity: int = 2
    max_capacity: int = 4
    stream_shards: int = 4  # 0: on-demand capacity
    port: int = 8000
    root_volume_gib: int = 30
    # exactly one of the three
    wheel_file: str | None = None  # a local .whl, uploaded as a CDK asset
    wheel_s3_uri: str | None = None  # s3://bucket/key of a .whl already uploaded
    wheel_url: str | None = None  # https:// URL of a .whl
    settings_toml: str = ""  # extra settings for `recserve serve --config`
    cloudfront_public_key_pem: str = ""
    media_allowed_prefixes: tuple[str, ...] = ("videos/",)
    admin_keys_parameter: str = "/recserve/admin-keys"
    client_keys_parameter: str = "/recserve/client-keys"
    cloudfront_private_key_parameter: str = "/recserve/cloudfront-private-key"
    certificate_arn: str | None = None
    allow_http: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"context 'name' must be 1-20 lowercase letters, digits or '-', starting with a "
                f"letter (it prefixes bucket, stream and table names), not {self.name!r}"
            )
        if not _GRAVITON.fullmatch(self.instance_type):
            raise ConfigError(
                f"context 'instance_type' must be a Graviton (arm64) type such as c7g.large, "
                f"not {self.instance_type!r}: the AMI and the wheel are aarch64"
            )
        if not 0 <= self.min_capacity <= self.max_capacity or self.max_capacity < 1:
            raise ConfigError(
                f"context 'min_capacity' ({self.min_capacity}) and 'max_capacity' "
                f"({self.max_capacity}) need 0 <= min <= max and max >= 1"
            )
        if self.stream_shards < 0:
            raise ConfigError(f"context 'stream_shards' must be >= 0, not {self.stream_shards}")
        if self.stream_shards and self.max_capacity > self.stream_shards:
            raise ConfigError(
                f"context 'max_capacity' ({self.max_capacity}) exceeds 'stream_shards' "
                f"({self.stream_shards}): run at most one replica per shard (README, Resources)"
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"context 'port' must be in 1..65535, not {self.port}")
        if self.root_volume_gib < 8:
            raise ConfigError(f"context 'root_volume_gib' must be >= 8, not {self.root_volume_gib}")
        self._check_wheel()
        self._check_settings()
        if "-----BEGIN PUBLIC KEY-----" not in self.cloudfront_public_key_pem:
            raise ConfigError(
                "context 'cloudfront_public_key_file' (or 'cloudfront_public_key_pem') is "
                "required: the RSA public key (PEM, '-----BEGIN PUBLIC KEY-----') of the key "
                "pair that signs media URLs"
            )
        if not self.media_allowed_prefixes or not all(
            isinstance(p, str) and p for p in self.media_allowed_prefixes
        ):
            raise ConfigError(
                "context 'media_allowed_prefixes' must be a non-empty list of key prefixes "
                '(["videos/"]): signed URLs need them'
            )
        for key in (
            "admin_keys_parameter",
            "client_keys_parameter",
            "cloudfront_private_key_parameter",
        ):
            value = getattr(self, key)
            if not _PARAMETER.fullmatch(value) or value.startswith("/aws"):
                raise ConfigError(f"context {key!r} is not an SSM parameter name: {value!r}")
        if self.certificate_arn is None and not self.allow_http:
            raise ConfigError(
                "context 'certificate_arn' is required (an ACM certificate for the load "
                "balancer's HTTPS listener): API keys travel in a header. Set 'allow_http' to "
                "true to listen on plain HTTP port 80 instead (tests only)"
            )
        if self.certificate_arn is not None and not self.certificate_arn.startswith("arn:"):
            raise ConfigError(
                f"context 'certificate_arn' must be an ACM certificate ARN, not "
                f"{self.certificate_arn!r}"
            )

    def _check_wheel(self) -> None:
        given = [key for key in ("wheel_file", "wheel_s3_uri", "wheel_url") if getattr(self, key)]
        if len(given) != 1:
            raise ConfigError(
                "exactly one of the contexts 'wheel_file' (a local .whl), 'wheel_s3_uri' "
                f"(s3://bucket/key.whl) or 'wheel_url' (https://…/x.whl) is required; got {given}"
            )
        key = given[0]
        value: str = getattr(self, key)
        if key == "wheel_file" and not Path(value).is_file():
            raise ConfigError(f"context 'wheel_file': no such file {value!r}")
        if key == "wheel_s3_uri":
            parsed = urlparse(value)
            if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
                raise ConfigError(f"context 'wheel_s3_uri' must be s3://bucket/key, not {value!r}")
        if key == "wheel_url" and urlparse(value).scheme != "https":
            raise ConfigError(f"context 'wheel_url' must be an https:// URL, not {value!r}")
        if not _WHEEL.fullmatch(self.wheel_name):
            raise ConfigError(
                f"context {key!r} must name a recserve wheel for Linux aarch64 "
                f"(recserve-<version>-<python>-<abi>-manylinux…_aarch64.whl), not "
                f"{self.wheel_name!r}"
            )

    def _check_settings(self) -> None:
        try:
            settings = tomllib.loads(self.settings_toml)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"context 'settings_file' is not TOML: {error}") from None
        dims = settings.get("dims")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ConfigError(
                "context 'settings_file' (or 'settings_toml') must set dims (dims = 64): "
                "with the catalogue stream every replica opens its store at start to read the "
                f"stream (README, One catalogue across replicas); got dims = {dims!r}"
            )

    @property
    def wheel_name(self) -> str:
        source = self.wheel_file or self.wheel_s3_uri or self.wheel_url or ""
        return source.rstrip("/").rsplit("/", 1)[-1]

    @property
    def stream_name(self) -> str:
        return f"{self.name}-events"

    @property
    def catalogue_stream_name(self) -> str:
        return f"{self.name}-catalogue"

    @property
    def table_prefix(self) -> str:
        return f"{self.name}-"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> StackConfig:
        """From CDK context (``app.node.try_get_context``): values given with ``-c key=value``
        are strings, those in cdk.json JSON values; both are accepted."""
        defaults = cls.__dataclass_fields__
        values: dict[str, Any] = {}
        for key in ("min_capacity", "max_capacity", "stream_shards", "port", "root_volume_gib"):
            raw = get(key)
            if raw is not None:
                values[key] = _integer(key, raw)
        for key in (
            "name",
            "instance_type",
            "wheel_file",
            "wheel_s3_uri",
            "wheel_url",
            "admin_keys_parameter",
            "client_keys_parameter",
            "cloudfront_private_key_parameter",
            "certificate_arn",
        ):
            raw = get(key)
            if raw is not None and raw != "":
                if not isinstance(raw, str):
                    raise ConfigError(f"context {key!r} must be a string, not {raw!r}")
                values[key] = raw
        raw = get("allow_http")
        if raw is not None:
            values["allow_http"] = _boolean("allow_http", raw)
        raw = get("media_allowed_prefixes")
        if raw is not None:
            values["media_allowed_prefixes"] = _string_list("media_allowed_prefixes", raw)
        values["settings_toml"] = _text(get, "settings_toml", "settings_file") or ""
        values["cloudfront_public_key_pem"] = (
            _text(get, "cloudfront_public_key_pem", "cloudfront_public_key_file") or ""
        )
        unknown = set(values) - set(defaults)
        assert not unknown, unknown
        return cls(**values)


def _integer(key: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ConfigError(f"context {key!r} must be an integer, not {raw!r}")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"context {key!r} must be an integer, not {raw!r}") from None


def _boolean(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"context {key!r} must be true or false, not {raw!r}")


def _string_list(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(
                f'context {key!r} must be a JSON list of strings (["videos/"])'
            ) from None
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f'context {key!r} must be a list of strings (["videos/"]), not {raw!r}')
    return tuple(raw)


def _text(get: Callable[[str], Any], inline: str, file: str) -> str | None:
    """The value of context ``inline``, or the contents of the file named by ``file``."""
    text, path = get(inline), get(file)
    if text is not None and path is not None:
        raise ConfigError(f"give context {inline!r} or {file!r}, not both")
    if path is not None:
        if not isinstance(path, str) or not Path(path).is_file():
            raise ConfigError(f"context {file!r}: no such file {path!r}")
        return Path(path).read_text()
    if text is not None and not isinstance(text, str):
        raise ConfigError(f"context {inline!r} must be a string")
    return text


class RecserveStack(cdk.Stack):
    """All of recserve's AWS resources; attributes expose the ones tests and users look at."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = c = config
        account, region, partition = cdk.Aws.ACCOUNT_ID, cdk.Aws.REGION, cdk.Aws.PARTITION

        # -- events and user state -------------------------------------------------------
        on_demand = c.stream_shards == 0
        self.stream = kinesis.Stream(
            self,
            "Events",
            stream_name=c.stream_name,
            stream_mode=kinesis.StreamMode.ON_DEMAND
            if on_demand
            else kinesis.StreamMode.PROVISIONED,
            shard_count=None if on_demand else c.stream_shards,
            encryption=kinesis.StreamEncryption.MANAGED,  # aws/kinesis: no KMS grants needed
            retention_period=cdk.Duration.hours(24),
        )
        # Items, takedowns and reviews, read whole by every replica: exactly one shard, which
        # keeps them in one order (recserve refuses a catalogue stream of more shards), so
        # provisioned, never on-demand (which would start with several shards and reshard).
        self.catalogue_stream = kinesis.Stream(
            self,
            "Catalogue",
            stream_name=c.catalogue_stream_name,
            stream_mode=kinesis.StreamMode.PROVISIONED,
            shard_count=1,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=CATALOGUE_RETENTION,
        )
        self.tables: dict[str, dynamodb.Table] = {}
        for suffix, key, key_type in TABLES:
            self.tables[suffix] = dynamodb.Table(
                self,
                f"{suffix.title()}Table",
                table_name=f"{c.table_prefix}{suffix}",
                partition_key=dynamodb.Attribute(
                    name=key,
                    type=getattr(dynamodb.AttributeType, {"S": "STRING", "N": "NUMBER"}[key_type]),
                ),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=suffix == "users"
                ),
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )

        # -- buckets and CloudFront ------------------------------------------------------
        self.media_bucket = self._bucket("Media", f"{c.name}-media-{account}-{region}")
        catalogue_prefix = f"{SNAPSHOT_PREFIX}/catalogue/"
        self.snapshots_bucket = self._bucket(
            "Snapshots",
            f"{c.name}-snapshots-{account}-{region}",
            versioned=True,
            lifecycle_rules=[
                # recserve writes a snapshot every snapshot_interval_s and deletes all but
                # the newest few: their noncurrent versions go after a day, and so do the
                # delete markers left once those versions are gone.
                s3.LifecycleRule(
                    id="CatalogueSnapshots",
                    prefix=catalogue_prefix,
                    noncurrent_version_expiration=cdk.Duration.days(CATALOGUE_NONCURRENT_DAYS),
                    expired_object_delete_marker=True,
                ),
                # Anything else kept here (your copies and artifacts); and the parts of a
                # multipart upload that neither completed nor was aborted. Where both rules
                # apply, S3 honours the shorter noncurrent expiration.
                s3.LifecycleRule(
                    id="Everything",
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                ),
            ],
        )
        self.snapshot_uri = f"s3://{self.snapshots_bucket.bucket_name}/{SNAPSHOT_PREFIX}"
        self.public_key = cloudfront.PublicKey(
            self,
            "MediaSigningKey",
            encoded_key=c.cloudfront_public_key_pem.strip() + "\n",
            comment=f"{c.name}: verifies the signed media URLs recserve hands out",
        )
        self.key_group = cloudfront.KeyGroup(self, "MediaKeyGroup", items=[self.public_key])
        self.distribution = cloudfront.Distribution(
            self,
            "MediaDistribution",
            comment=f"{c.name} media",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.media_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                trusted_key_groups=[self.key_group],
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        )

        # -- network ------------------------------------------------------------------------
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(
                    name="replicas", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                ),
            ],
            gateway_endpoints={  # DynamoDB and S3 traffic skips the NAT gateway (free)
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
        )
        self.alb_security_group = ec2.SecurityGroup(
            self, "AlbSecurityGroup", vpc=self.vpc, description=f"{c.name} load balancer"
        )
        self.instance_security_group = ec2.SecurityGroup(
            self, "InstanceSecurityGroup", vpc=self.vpc, description=f"{c.name} replicas"
        )
        self.instance_security_group.add_ingress_rule(
            self.alb_security_group, ec2.Port.tcp(c.port), "the load balancer only"
        )

        # -- the instance role: the README's actions on these resources, and nothing else ---
        self.wheel_asset: s3_assets.Asset | None = None
        if c.wheel_file is not None:
            self.wheel_asset = s3_assets.Asset(self, "Wheel", path=c.wheel_file)
        parameter_arns = [
            f"arn:{partition}:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
            for name in (
                c.admin_keys_parameter,
                c.client_keys_parameter,
                c.cloudfront_private_key_parameter,
            )
        ]
        statements = [
            iam.PolicyStatement(
                sid="KinesisEvents",
                actions=list(KINESIS_ACTIONS),
                resources=[self.stream.stream_arn],
            ),
            iam.PolicyStatement(
                sid="KinesisCatalogue",
                actions=list(CATALOGUE_STREAM_ACTIONS),
                resources=[self.catalogue_stream.stream_arn],
            ),
            iam.PolicyStatement(
                sid="CatalogueSnapshots",
                actions=list(SNAPSHOT_OBJECT_ACTIONS),
                resources=[self.snapshots_bucket.arn_for_objects(f"{catalogue_prefix}*")],
            ),
            # ListObjectsV2 with Prefix "<prefix>/catalogue/" (and "<prefix>/catalogue/<seq>/"
            # when pruning); * matches the empty string, so the bare prefix passes. A GetObject
            # of a missing key (latest.json before the first snapshot) is checked against this
            # too, with the key as s3:prefix: it passes, so the answer is NoSuchKey, not 403.
            iam.PolicyStatement(
                sid="CatalogueSnapshotsList",
                actions=["s3:ListBucket"],
                resources=[self.snapshots_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": f"{catalogue_prefix}*"}},
            ),
            iam.PolicyStatement(
                sid="DynamoDBTables",
                actions=list(DYNAMODB_ACTIONS),
                resources=[t.table_arn for t in self.tables.values()],
            ),
            iam.PolicyStatement(
                sid="SettingsParameters", actions=["ssm:GetParameter"], resources=parameter_arns
            ),
        ]
        wheel_object = self._wheel_object_arn()
        if wheel_object is not None:
            statements.append(
                iam.PolicyStatement(sid="Wheel", actions=["s3:GetObject"], resources=[wheel_object])
            )
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"{c.name} replicas: README 'Scale-out on AWS' IAM actions only",
            inline_policies={"recserve": iam.PolicyDocument(statements=statements)},
        )

        # -- the replicas ----------------------------------------------------------------
        launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(c.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(
                cpu_type=ec2.AmazonLinuxCpuType.ARM_64
            ),
            user_data=self._user_data(),
            role=self.instance_role,
            security_group=self.instance_security_group,
            require_imdsv2=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        c.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                    ),
                )
            ],
        )
        self.asg = autoscaling.AutoScalingGroup(
            self,
            "Replicas",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=launch_template,
            min_capacity=c.min_capacity,
            max_capacity=c.max_capacity,
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=cdk.Duration.minutes(10),  # installs Python and the wheel first
            ),
            update_policy=autoscaling.UpdatePolicy.rolling_update(max_batch_size=1),
        )
        self.asg.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)

        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            security_group=self.alb_security_group,
            drop_invalid_header_fields=True,
        )
        if c.certificate_arn is not None:
            listener = self.alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(c.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            )
        else:
            listener = self.alb.add_listener(
                "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP
            )
        self.target_group = listener.add_targets(
            "Replicas",
            port=c.port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.asg],
            deregistration_delay=cdk.Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path="/readyz",
                port=str(c.port),
                protocol=elbv2.Protocol.HTTP,
                healthy_http_codes="200",
                interval=cdk.Duration.seconds(HEALTH_INTERVAL_S),
                timeout=cdk.Duration.seconds(4),
                healthy_threshold_count=2,
                unhealthy_threshold_count=HEALTH_UNHEALTHY_THRESHOLD,
            ),
        )

        for name, value in (
            ("LoadBalancerDns", self.alb.load_balancer_dns_name),
            ("MediaDomain", self.distribution.distribution_domain_name),
            ("MediaBucket", self.media_bucket.bucket_name),
            ("SnapshotsBucket", self.snapshots_bucket.bucket_name),
            ("Stream", self.stream.stream_name),
            ("CatalogueStream", self.catalogue_stream.stream_name),
            ("SnapshotUri", self.snapshot_uri),
            ("KeyPairId", self.public_key.public_key_id),
        ):
            cdk.CfnOutput(self, name, value=value)

    def _bucket(
        self,
        construct_id: str,
        name: str,
        *,
        versioned: bool = False,
        lifecycle_rules: Sequence[s3.LifecycleRule] | None = None,
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            lifecycle_rules=list(lifecycle_rules) if lifecycle_rules else None,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def _wheel_object_arn(self) -> str | None:
        partition = cdk.Aws.PARTITION
        if self.wheel_asset is not None:
            return self.wheel_asset.bucket.arn_for_objects(self.wheel_asset.s3_object_key)
        if self.config.wheel_s3_uri is not None:
            parsed = urlparse(self.config.wheel_s3_uri)
            return f"arn:{partition}:s3:::{parsed.netloc}/{parsed.path.lstrip('/')}"
        return None  # an https URL needs no permission

    def _wheel_fetch(self, target: str) -> str:
        c = self.config
        uri: str | None = None
        if self.wheel_asset is not None:
            uri = f"s3://{self.wheel_asset.s3_bucket_name}/{self.wheel_asset.s3_object_key}"
        elif c.wheel_s3_uri is not None:  # the CLI follows a bucket in another region
            uri = c.wheel_s3_uri
        if uri is not None:
            return f"aws s3 cp --region {cdk.Aws.REGION} {shlex.quote(uri)} {shlex.quote(target)}"
        assert c.wheel_url is not None
        return f"curl -fsSL --retry 5 -o {shlex.quote(target)} {shlex.quote(c.wheel_url)}"

    def _user_data(self) -> ec2.UserData:
        """Amazon Linux 2023 (arm64): Python 3.11, the wheel with its ``aws`` extra, the settings
        file, and a systemd unit running ``recserve serve`` as an unprivileged user."""
        c = self.config
        wheel = f"{WHEEL_DIR}/{c.wheel_name}"
        settings = c.settings_toml or "# infrastructure settings come from /etc/recserve/aws.env\n"
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "set -euxo pipefail",
            "dnf install -y python3.11 python3.11-pip",
            f"id {SERVICE_USER} >/dev/null 2>&1 || useradd --system --home-dir {DATA_DIR} "
            f"--shell /sbin/nologin {SERVICE_USER}",
            f"install -d -m 0755 /etc/recserve /opt/recserve/bin {WHEEL_DIR}",
            self._wheel_fetch(wheel),
            f"python3.11 -m venv {VENV}",
            f"{VENV}/bin/pip install --no-cache-dir {shlex.quote(wheel + '[aws]')}",
            _write_file(CONFIG_FILE, base64.b64encode(settings.encode()).decode(), "0644", True),
            _write_file(ENV_FILE, self._environment(), "0644", False),
            _write_file(START_SCRIPT, _START_SCRIPT, "0755", False),
            _write_file("/etc/systemd/system/recserve.service", _UNIT, "0644", False),
            "systemctl daemon-reload",
            "systemctl enable --now recserve.service",
        )
        return user_data

    def _environment(self) -> str:
        """The settings that depend on the stack, as environment variables: they override the
        TOML file (README, Configuration), so the user's settings cannot point elsewhere."""
        c = self.config
        values: Sequence[tuple[str, str]] = (
            ("AWS_REGION", cdk.Aws.REGION),
            ("AWS_DEFAULT_REGION", cdk.Aws.REGION),
            ("RECSERVE_HOST", "0.0.0.0"),
            ("RECSERVE_PORT", str(c.port)),
            ("RECSERVE_DATA_DIR", DATA_DIR),
            ("RECSERVE_EVENTS_SOURCE", "kinesis"),
            ("RECSERVE_KINESIS_STREAM", self.stream.stream_name),
            ("RECSERVE_STATE_STORE", "dynamodb"),
            ("RECSERVE_DYNAMODB_TABLE_PREFIX", c.table_prefix),
            ("RECSERVE_CREATE_TABLES", "false"),
            ("RECSERVE_CATALOG_STREAM", self.catalogue_stream.stream_name),
            ("RECSERVE_SNAPSHOT_URI", self.snapshot_uri),
            ("RECSERVE_SHUTDOWN_GRACE_S", str(SHUTDOWN_GRACE_S)),
            ("RECSERVE_CLOUDFRONT__DOMAIN", self.distribution.distribution_domain_name),
            ("RECSERVE_CLOUDFRONT__KEY_PAIR_ID", self.public_key.public_key_id),
            ("RECSERVE_CLOUDFRONT__ALLOWED_PREFIXES", json.dumps(list(c.media_allowed_prefixes))),
            ("ADMIN_KEYS_PARAMETER", c.admin_keys_parameter),
            ("CLIENT_KEYS_PARAMETER", c.client_keys_parameter),
            ("CLOUDFRONT_KEY_PARAMETER", c.cloudfront_private_key_parameter),
        )
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values)


def _write_file(path: str, content: str, mode: str, is_base64: bool) -> str:
    """A shell command writing ``content`` to ``path``: base64 for text from the user, a quoted
    heredoc (nothing expanded) for the stack's own text, which may hold CloudFormation tokens."""
    if is_base64:
        write = f"echo {content} | base64 -d > {path}"
    else:
        write = f"cat > {path} <<'RECSERVE_EOF'\n{content}RECSERVE_EOF"
    return f"{write}\nchmod {mode} {path}"


# Runs as the service user at every start: reads the API keys and the CloudFront private key
# from SSM Parameter Store (so the template and the user data hold no secret), then execs the
# server. Restarting the unit picks up rotated keys.
_START_SCRIPT = f"""#!/bin/bash
set -euo pipefail
. {ENV_FILE}
param() {{
  {VENV}/bin/python -c 'import sys, boto3
ssm = boto3.client("ssm")
print(ssm.get_parameter(Name=sys.argv[1], WithDecryption=True)["Parameter"]["Value"])' "$1"
}}
RECSERVE_AUTH__ADMIN_KEYS="$(param "$ADMIN_KEYS_PARAMETER")"
RECSERVE_AUTH__CLIENT_KEYS="$(param "$CLIENT_KEYS_PARAMETER")"
export RECSERVE_AUTH__ADMIN_KEYS RECSERVE_AUTH__CLIENT_KEYS
umask 077
param "$CLOUDFRONT_KEY_PARAMETER" > "$RUNTIME_DIRECTORY/cloudfront.pem"
export RECSERVE_CLOUDFRONT__PRIVATE_KEY_FILE="$RUNTIME_DIRECTORY/cloudfront.pem"
unset ADMIN_KEYS_PARAMETER CLIENT_KEYS_PARAMETER CLOUDFRONT_KEY_PARAMETER
exec {VENV}/bin/recserve serve --config {CONFIG_FILE}
"""

_UNIT = f"""[Unit]
Description=recserve feed service
Wants=network-online.target
After=network-online.target

[Service]
User={SERVICE_USER}
Group={SERVICE_USER}
ExecStart={START_SCRIPT}
StateDirectory=recserve
RuntimeDirectory=recserve
RuntimeDirectoryMode=0700
WorkingDirectory={DATA_DIR}
Restart=on-failure
RestartSec=5
# SIGTERM: /readyz says 503 for shutdown_grace_s, the drain, a final snapshot (README, Shutdown)
KillSignal=SIGTERM
TimeoutStopSec=120
LimitNOFILE=65536
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""
