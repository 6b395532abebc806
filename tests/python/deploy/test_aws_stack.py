"""deploy/aws: the CDK app synthesises (no AWS account, no network) into the resources the
README's "Scale-out on AWS" section describes, with a least-privilege instance role.

Synthesis runs the CDK's JavaScript through jsii, so it needs ``node`` and ``aws-cdk-lib`` (in
the ``test`` extra). Without either these tests skip, unless ``RECSERVE_REQUIRE_AWS_SERVERS=1``
(CI, which installs node) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "deploy" / "aws"


def _missing() -> str | None:
    if not APP_DIR.is_dir():
        return "not run from a checkout (no deploy/aws)"
    if shutil.which("node") is None:
        return "node is not on PATH (the CDK synthesises through jsii)"
    try:
        import aws_cdk  # noqa: F401
    except ImportError:
        return "aws-cdk-lib is not installed (pip install '.[deploy]')"
    return None


_problem = _missing()
if _problem is not None:
    if os.environ.get("RECSERVE_REQUIRE_AWS_SERVERS") == "1":
        pytest.fail(_problem, pytrace=False)
    pytest.skip(_problem, allow_module_level=True)

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Match, Template  # noqa: E402

sys.path.insert(0, str(APP_DIR))
import recserve_stack  # noqa: E402
from recserve_stack import ConfigError, RecserveStack, StackConfig  # noqa: E402

from recserve.service.auth import unprotected_listen  # noqa: E402
from recserve.service.catalogue_snapshots import FILES, S3Snapshots, parse_uri  # noqa: E402
from recserve.service.settings import load_settings  # noqa: E402

WHEEL = "recserve-0.1.0-cp311-cp311-manylinux_2_28_aarch64.whl"
PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "-----END PUBLIC KEY-----\n"
)
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
SNAPSHOTS_BUCKET = "recserve-snapshots-123456789012-eu-west-1"

Synth = Callable[..., tuple[RecserveStack, Template]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cdk-inputs")
    (folder / WHEEL).write_bytes(b"not really a wheel")
    (folder / "media.pub").write_text(PUBLIC_KEY)
    return {
        "wheel_file": str(folder / WHEEL),
        "cloudfront_public_key_file": str(folder / "media.pub"),
        "certificate_arn": CERTIFICATE,
        "settings_toml": "dims = 64\n",  # the catalogue stream needs dims
    }


@pytest.fixture(scope="module")
def synth(inputs: dict[str, str]) -> Synth:
    def make(**context: Any) -> tuple[RecserveStack, Template]:
        merged = {**inputs, **context}
        app = cdk.App(context={k: v for k, v in merged.items() if v is not None})
        config = StackConfig.from_context(app.node.try_get_context)
        stack = RecserveStack(app, config.name, config=config)
        manifest = json.loads((Path(app.synth().directory) / "manifest.json").read_text())
        assert "missing" not in manifest  # nothing was looked up
        template = Template.from_stack(stack)
        return stack, template

    return make


@pytest.fixture(scope="module")
def default(synth: Synth) -> tuple[RecserveStack, Template]:
    return synth()


@pytest.fixture(scope="module")
def template(default: tuple[RecserveStack, Template]) -> Template:
    return default[1]


def only(template: Template, kind: str) -> dict[str, Any]:
    found = template.find_resources(kind)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found.values()))


def logical_id(template: Template, kind: str) -> str:
    found = template.find_resources(kind)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found))


def user_data(template: Template, **tokens: str) -> str:
    """The instance user data as text, CloudFormation references replaced by ``tokens`` (by
    logical id or pseudo parameter) or by a placeholder naming them."""
    data = only(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    return "".join(_render(part, tokens) for part in data["UserData"]["Fn::Base64"]["Fn::Join"][1])


def _render(part: Any, tokens: dict[str, str]) -> str:
    if isinstance(part, str):
        return part
    ((function, argument),) = part.items()
    name = (
        argument
        if function == "Ref"
        else (argument[0] if function == "Fn::GetAtt" else json.dumps(argument))
    )
    return tokens.get(name, f"TOKEN-{re.sub(r'[^A-Za-z0-9]', '', name)[:24]}")


def stream(template: Template, name: str) -> tuple[str, dict[str, Any]]:
    """The logical id and properties of the Kinesis stream called ``name``."""
    found = [
        (logical, r["Properties"])
        for logical, r in template.find_resources("AWS::Kinesis::Stream").items()
        if r["Properties"]["Name"] == name
    ]
    assert len(found) == 1, (name, found)
    return found[0]


def bucket(template: Template, name_part: str) -> str:
    """The logical id of the bucket whose name holds ``name_part``."""
    (logical,) = (
        logical
        for logical, b in template.find_resources("AWS::S3::Bucket").items()
        if name_part in json.dumps(b["Properties"]["BucketName"])
    )
    return logical


def heredoc(text: str, path: str) -> str:
    match = re.search(rf"cat > {re.escape(path)} <<'RECSERVE_EOF'\n(.*?)RECSERVE_EOF\n", text, re.S)
    assert match, path
    return match.group(1)


# ---- Kinesis and DynamoDB ---------------------------------------------------------------------


def test_the_stream_is_provisioned_with_the_shards_asked_for_and_encrypted(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {
            "Name": "recserve-events",
            "ShardCount": 4,
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
        },
    )


def test_zero_shards_makes_an_on_demand_stream(synth: Synth) -> None:
    _, template = synth(stream_shards="0", name="od")
    _, props = stream(template, "od-events")
    assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in props
    # the catalogue stream stays one provisioned shard whatever the events stream is
    _, catalogue = stream(template, "od-catalogue")
    assert catalogue["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert catalogue["ShardCount"] == 1


def test_the_catalogue_stream_has_exactly_one_provisioned_shard_encrypted_and_kept(
    template: Template,
) -> None:
    """recserve refuses a catalogue stream of more shards (catalogue_stream._only_shard), and
    on-demand capacity would start with several."""
    assert len(template.find_resources("AWS::Kinesis::Stream")) == 2
    logical, props = stream(template, "recserve-catalogue")
    assert props["ShardCount"] == 1
    assert props["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    # longer than a snapshot interval by far: a new replica reads on from the newest snapshot
    assert props["RetentionPeriodHours"] == 7 * 24
    assert template.to_json()["Resources"][logical]["DeletionPolicy"] == "Retain"


class _CreateTableRecorder:
    """A DynamoDB client on which every table is missing: records what ``create_table`` gets."""

    class exceptions:  # noqa: N801  (boto3's shape)
        class ResourceNotFoundException(Exception):
            pass

        class ResourceInUseException(Exception):
            pass

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}

    def describe_table(self, TableName: str) -> None:  # noqa: N803
        raise self.exceptions.ResourceNotFoundException(TableName)

    def create_table(self, **kwargs: Any) -> None:
        self.created[kwargs.pop("TableName")] = kwargs

    def get_waiter(self, name: str) -> Any:
        class Waiter:
            def wait(self, **kwargs: Any) -> None:
                pass

        return Waiter()


def test_the_tables_are_what_the_service_would_create_with_create_tables(
    template: Template,
) -> None:
    """The key schema and billing that recserve._aws.ensure_table gives each table."""
    from recserve.ingest.leases import LeaseTable
    from recserve.store.dynamodb import DynamoUsers

    client = _CreateTableRecorder()
    LeaseTable(client, "recserve-leases", "worker", create=True)  # as service/stream.py names
    DynamoUsers(client, "recserve-users", 64, create=True)
    assert set(client.created) == {"recserve-leases", "recserve-users"}
    tables = {
        t["Properties"]["TableName"]: t
        for t in template.find_resources("AWS::DynamoDB::Table").values()
    }
    assert set(tables) == set(client.created)
    for name, created in client.created.items():
        props = tables[name]["Properties"]
        assert props["KeySchema"] == created["KeySchema"], name
        assert props["AttributeDefinitions"] == created["AttributeDefinitions"], name
        assert props["BillingMode"] == created["BillingMode"] == "PAY_PER_REQUEST", name
        assert "GlobalSecondaryIndexes" not in props
        assert "LocalSecondaryIndexes" not in props
        assert tables[name]["DeletionPolicy"] == "Retain", name
    users = tables["recserve-users"]["Properties"]
    assert users["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


# ---- buckets and CloudFront --------------------------------------------------------------------


def test_both_buckets_block_public_access_encrypt_and_refuse_plain_http(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    names = set()
    for logical, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        assert bucket["DeletionPolicy"] == "Retain"
        names.add(json.dumps(props["BucketName"]))
        policy = next(
            p
            for p in template.find_resources("AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == {"Ref": logical}
        )
        deny = policy["Properties"]["PolicyDocument"]["Statement"][0]
        assert {k: v for k, v in deny.items() if k != "Resource"} == {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
        }
    assert any("recserve-media-" in n for n in names)
    assert any("recserve-snapshots-" in n for n in names)


def test_the_snapshots_bucket_is_versioned(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": Match.object_like(
                {"Fn::Join": ["", Match.array_with(["recserve-snapshots-"])]}
            ),
            "VersioningConfiguration": {"Status": "Enabled"},
        },
    )


def test_deleted_catalogue_snapshots_do_not_pile_up_as_noncurrent_versions(
    template: Template,
) -> None:
    """recserve writes a snapshot every snapshot_interval_s and deletes the older ones: their
    versions go after a day (not the bucket's 30), and failed multipart uploads too."""
    props = template.to_json()["Resources"][bucket(template, "recserve-snapshots-")]["Properties"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["CatalogueSnapshots"] == {
        "Id": "CatalogueSnapshots",
        "Prefix": "recserve/catalogue/",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "ExpiredObjectDeleteMarker": True,
        "Status": "Enabled",
    }
    assert rules["Everything"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "Prefix" not in rules["Everything"]
    assert rules["Everything"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert len(rules) == 2
    media = template.to_json()["Resources"][bucket(template, "recserve-media-")]["Properties"]
    assert "LifecycleConfiguration" not in media
    assert "VersioningConfiguration" not in media


def test_cloudfront_reads_the_media_bucket_through_oac_and_trusts_only_the_key_group(
    template: Template,
) -> None:
    oac = logical_id(template, "AWS::CloudFront::OriginAccessControl")
    template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {
            "OriginAccessControlConfig": Match.object_like(
                {
                    "OriginAccessControlOriginType": "s3",
                    "SigningBehavior": "always",
                    "SigningProtocol": "sigv4",
                }
            )
        },
    )
    key = logical_id(template, "AWS::CloudFront::PublicKey")
    assert (
        only(template, "AWS::CloudFront::PublicKey")["Properties"]["PublicKeyConfig"]["EncodedKey"]
        == PUBLIC_KEY
    )
    group = logical_id(template, "AWS::CloudFront::KeyGroup")
    template.has_resource_properties(
        "AWS::CloudFront::KeyGroup",
        {"KeyGroupConfig": Match.object_like({"Items": [{"Ref": key}]})},
    )
    config = only(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["TrustedKeyGroups"] == [{"Ref": group}]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # OAC, not the legacy OAI
    media = next(
        logical
        for logical, b in template.find_resources("AWS::S3::Bucket").items()
        if "recserve-media-" in json.dumps(b["Properties"]["BucketName"])
    )
    assert origin["DomainName"] == {"Fn::GetAtt": [media, "RegionalDomainName"]}
    # the bucket lets that distribution, and no one else, read objects
    distribution = logical_id(template, "AWS::CloudFront::Distribution")
    policy = next(
        p["Properties"]["PolicyDocument"]
        for p in template.find_resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": media}
    )
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert len(allows) == 1
    assert allows[0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allows[0]["Action"] == "s3:GetObject"
    assert distribution in json.dumps(allows[0]["Condition"]["StringEquals"]["AWS:SourceArn"])


# ---- the replicas and the load balancer --------------------------------------------------------


def test_the_replicas_are_graviton_instances_on_an_arm64_image_with_imdsv2(
    template: Template,
) -> None:
    data = only(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "c7g.large"
    assert data["MetadataOptions"] == {"HttpTokens": "required"}
    image = template.to_json()["Parameters"][data["ImageId"]["Ref"]]
    assert image["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert image["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-")
    assert image["Default"].endswith("-arm64")
    asg = only(template, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert (asg["MinSize"], asg["MaxSize"]) == ("2", "4")
    assert asg["HealthCheckType"] == "ELB"


def test_capacity_and_instance_type_come_from_context(synth: Synth) -> None:
    _, template = synth(instance_type="r7g.xlarge", min_capacity="1", max_capacity="3")
    data = only(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "r7g.xlarge"
    asg = only(template, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert (asg["MinSize"], asg["MaxSize"]) == ("1", "3")


def test_the_target_group_checks_readyz_and_drops_a_draining_replica_within_the_grace(
    template: Template,
) -> None:
    group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    assert group["HealthCheckPath"] == "/readyz"
    assert group["HealthCheckPort"] == "8000"
    assert group["Port"] == 8000
    assert group["Matcher"] == {"HttpCode": "200"}
    # README, Shutdown: interval x unhealthy threshold below shutdown_grace_s
    unhealthy_after = group["HealthCheckIntervalSeconds"] * group["UnhealthyThresholdCount"]
    assert unhealthy_after < recserve_stack.SHUTDOWN_GRACE_S
    assert f"RECSERVE_SHUTDOWN_GRACE_S={recserve_stack.SHUTDOWN_GRACE_S}\n" in user_data(template)
    asg = only(template, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert asg["TargetGroupARNs"] == [
        {"Ref": logical_id(template, "AWS::ElasticLoadBalancingV2::TargetGroup")}
    ]


def test_the_listener_is_https_with_the_certificate(template: Template) -> None:
    listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert (listener["Port"], listener["Protocol"]) == (443, "HTTPS")
    assert listener["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internet-facing"}
    )


def test_plain_http_only_when_asked_for(synth: Synth) -> None:
    _, template = synth(certificate_arn=None, allow_http="true")
    listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")


def test_only_the_load_balancer_reaches_the_service_port(template: Template) -> None:
    (ingress,) = template.find_resources("AWS::EC2::SecurityGroupIngress").values()
    props = ingress["Properties"]
    assert (props["FromPort"], props["ToPort"], props["IpProtocol"]) == (8000, 8000, "tcp")
    assert "SourceSecurityGroupId" in props
    assert "CidrIp" not in props
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    instance = next(
        k for k, g in groups.items() if "replicas" in g["Properties"]["GroupDescription"]
    )
    assert not groups[instance]["Properties"].get("SecurityGroupIngress")


# ---- the instance role -------------------------------------------------------------------------


def readme_grants() -> dict[str, set[str]]:
    """The README's IAM list, by what it is on: "events" (the events stream), "dynamodb",
    "catalogue" (with catalog_stream) and "snapshots" (with snapshot_uri)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("**IAM**: the replicas' instance role needs")
    section = text[start : text.index("Clients that produce directly", start)]
    grants: dict[str, set[str]] = {}
    for bullet in section.split("\n- ")[1:]:
        actions = set(re.findall(r"`((?:kinesis|dynamodb|s3):[A-Za-z]+)`", bullet))
        if bullet.startswith("with `catalog_stream`"):
            kind = "catalogue"
        elif bullet.startswith("with `snapshot_uri`"):
            kind = "snapshots"
        elif all(a.startswith("kinesis:") for a in actions):
            kind = "events"
        else:
            kind = "dynamodb"
        grants.setdefault(kind, set()).update(actions)
    return grants


def readme_actions() -> set[str]:
    return set().union(*readme_grants().values())


def role_statements(template: Template) -> list[dict[str, Any]]:
    role = only(template, "AWS::IAM::Role")["Properties"]
    assert "ManagedPolicyArns" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
        }
    ]
    (policy,) = role["Policies"]
    assert not template.find_resources("AWS::IAM::Policy")  # nothing else is attached to it
    assert not template.find_resources("AWS::IAM::ManagedPolicy")
    return list(policy["PolicyDocument"]["Statement"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


SNAPSHOT_OBJECTS = "/recserve/catalogue/*"
#: The role's statements, less the one that reads a wheel from S3.
SIDS_WITHOUT_WHEEL = {
    "KinesisEvents",
    "KinesisCatalogue",
    "CatalogueSnapshots",
    "CatalogueSnapshotsList",
    "DynamoDBTables",
    "SettingsParameters",
}


def test_the_instance_role_has_the_readme_actions_on_these_resources_and_nothing_else(
    template: Template,
) -> None:
    statements = {s["Sid"]: s for s in role_statements(template)}
    assert set(statements) == SIDS_WITHOUT_WHEEL | {"Wheel"}
    for sid, statement in statements.items():
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        assert ("Condition" in statement) == (sid == "CatalogueSnapshotsList"), sid
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            if sid == "CatalogueSnapshots":  # the one wildcard: the objects under the prefix
                assert text.count("*") == 1, resource
                assert text.endswith(f'"{SNAPSHOT_OBJECTS}"]]}}'), resource
            else:
                assert "*" not in text, resource
    # the README's list, each on its own resource, less CreateTable (the stack makes the
    # tables: create_tables = false), plus AbortMultipartUpload (a failed upload's parts)
    readme = readme_grants()
    assert set(readme) == {"events", "dynamodb", "catalogue", "snapshots"}

    def granted(*sids: str) -> set[str]:
        return {a for sid in sids for a in as_list(statements[sid]["Action"])}

    assert granted("KinesisEvents") == readme["events"]
    assert granted("DynamoDBTables") == readme["dynamodb"] - {"dynamodb:CreateTable"}
    assert "dynamodb:CreateTable" in readme["dynamodb"]
    assert (
        granted("KinesisCatalogue")
        == readme["catalogue"]
        == set(recserve_stack.CATALOGUE_STREAM_ACTIONS)
    )
    assert granted("CatalogueSnapshots", "CatalogueSnapshotsList") == readme["snapshots"] | {
        "s3:AbortMultipartUpload"
    }
    assert granted("CatalogueSnapshotsList") == {"s3:ListBucket"}

    events, _ = stream(template, "recserve-events")
    assert statements["KinesisEvents"]["Resource"] == {"Fn::GetAtt": [events, "Arn"]}
    catalogue, _ = stream(template, "recserve-catalogue")
    assert statements["KinesisCatalogue"]["Resource"] == {"Fn::GetAtt": [catalogue, "Arn"]}
    snapshots = bucket(template, "recserve-snapshots-")
    assert statements["CatalogueSnapshots"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [snapshots, "Arn"]}, SNAPSHOT_OBJECTS]]
    }
    assert statements["CatalogueSnapshotsList"]["Resource"] == {"Fn::GetAtt": [snapshots, "Arn"]}
    assert statements["CatalogueSnapshotsList"]["Condition"] == {
        "StringLike": {"s3:prefix": "recserve/catalogue/*"}
    }
    tables = sorted(template.find_resources("AWS::DynamoDB::Table"))
    assert (
        sorted(r["Fn::GetAtt"][0] for r in statements["DynamoDBTables"]["Resource"]) == tables
    )  # the tables themselves: no index ARNs, as they have no indexes
    assert all(r["Fn::GetAtt"][1] == "Arn" for r in statements["DynamoDBTables"]["Resource"])

    assert statements["SettingsParameters"]["Action"] == "ssm:GetParameter"
    parameters = [json.dumps(r) for r in statements["SettingsParameters"]["Resource"]]
    for name in ("recserve/admin-keys", "recserve/client-keys", "recserve/cloudfront-private-key"):
        assert sum(p.endswith(f':parameter/{name}"]]}}') for p in parameters) == 1, name
    assert len(parameters) == 3

    assert statements["Wheel"]["Action"] == "s3:GetObject"
    wheel = json.dumps(statements["Wheel"]["Resource"])
    assert "cdk-hnb659fds-assets-" in wheel
    assert wheel.endswith('.whl"]]}')


def test_a_wheel_in_s3_is_readable_as_that_one_object(synth: Synth) -> None:
    uri = f"s3://my-artifacts/releases/{WHEEL}"
    _, template = synth(wheel_file=None, wheel_s3_uri=uri)
    statements = {s["Sid"]: s for s in role_statements(template)}
    assert statements["Wheel"]["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, f":s3:::my-artifacts/releases/{WHEEL}"],
        ]
    }
    assert f"aws s3 cp --region TOKEN-AWSRegion {uri} /opt/recserve/wheels/{WHEEL}" in user_data(
        template
    )


def test_a_wheel_from_a_url_needs_no_s3_permission(synth: Synth) -> None:
    url = f"https://example.com/dist/{WHEEL}"
    _, template = synth(wheel_file=None, wheel_url=url)
    assert {s["Sid"] for s in role_statements(template)} == SIDS_WITHOUT_WHEEL
    assert f"curl -fsSL --retry 5 -o /opt/recserve/wheels/{WHEEL} {url}" in user_data(template)


def test_the_media_bucket_is_not_in_the_role_and_the_snapshots_bucket_only_on_its_prefix(
    template: Template,
) -> None:
    # recserve signs media URLs with the key pair: it calls no S3 API on the media bucket
    # (README, IAM). On the snapshots bucket: the catalogue prefix's objects, and listing it.
    statements = role_statements(template)
    media = bucket(template, "recserve-media-")
    assert media not in json.dumps(statements)
    snapshots = bucket(template, "recserve-snapshots-")
    on_snapshots = [s for s in statements if snapshots in json.dumps(s["Resource"])]
    assert [s["Sid"] for s in on_snapshots] == ["CatalogueSnapshots", "CatalogueSnapshotsList"]
    objects, listing = on_snapshots
    assert objects["Resource"]["Fn::Join"][1][1] == SNAPSHOT_OBJECTS
    assert "s3:ListBucket" not in as_list(objects["Action"])
    assert listing["Action"] == "s3:ListBucket"  # the only action on the bucket itself
    assert listing["Condition"]["StringLike"]["s3:prefix"] == "recserve/catalogue/*"


# ---- what recserve's snapshot code asks of S3, against the role --------------------------------


class _RecordingS3:
    """Enough of an S3 client for S3Snapshots, in memory; records each request as
    (IAM action, resource ARN, s3:prefix or None). A GetObject of a missing key is also
    checked as ListBucket with the key as s3:prefix: S3 answers NoSuchKey (not 403) only if
    that is allowed."""

    class _NoSuchKey(Exception):
        pass

    exceptions = SimpleNamespace(NoSuchKey=_NoSuchKey)

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []

    def _object(self, action: str, bucket: str, key: str) -> None:
        self.requests.append((action, f"arn:aws:s3:::{bucket}/{key}", None))

    def upload_file(self, filename: str, bucket: str, key: str) -> None:
        # multipart or not, each part's call is authorised as PutObject; a failed one is
        # aborted (AbortMultipartUpload)
        self._object("s3:PutObject", bucket, key)
        self._object("s3:AbortMultipartUpload", bucket, key)
        self.objects[bucket, key] = Path(filename).read_bytes()

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803
        self._object("s3:PutObject", Bucket, Key)
        self.objects[Bucket, Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._object("s3:GetObject", Bucket, Key)
        if (Bucket, Key) not in self.objects:
            self.requests.append(("s3:ListBucket", f"arn:aws:s3:::{Bucket}", Key))
            raise self._NoSuchKey(Key)
        return {"Body": SimpleNamespace(read=lambda: self.objects[Bucket, Key])}

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        self._object("s3:GetObject", bucket, key)  # HeadObject, then GetObject
        Path(filename).write_bytes(self.objects[bucket, key])

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        bucket, prefix = kwargs["Bucket"], kwargs["Prefix"]
        self.requests.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix))
        keys = sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))
        if kwargs.get("Delimiter") != "/":
            return {"Contents": [{"Key": k} for k in keys], "IsTruncated": False}
        folders = sorted(
            {prefix + k[len(prefix) :].split("/")[0] + "/" for k in keys if "/" in k[len(prefix) :]}
        )
        return {"CommonPrefixes": [{"Prefix": f} for f in folders], "IsTruncated": False}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> None:  # noqa: N803
        for entry in Delete["Objects"]:
            self._object("s3:DeleteObject", Bucket, entry["Key"])
            del self.objects[Bucket, entry["Key"]]


_PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}


def _resolve(value: Any, names: dict[str, str]) -> str:
    """A statement's resource as an ARN: each bucket's Arn attribute from ``names``, pseudo
    parameters from ``_PSEUDO``, anything else a placeholder that matches no S3 ARN."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Fn::Join":
        return "".join(_resolve(part, names) for part in argument[1])
    if function == "Ref" and argument in _PSEUDO:
        return _PSEUDO[argument]
    if function == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: _PSEUDO[m.group(1)], argument)
    if function == "Fn::GetAtt" and argument[0] in names and argument[1] == "Arn":
        return f"arn:aws:s3:::{names[argument[0]]}"
    return f"<{json.dumps(value)}>"


def _like(pattern: str, value: str) -> bool:
    """IAM's StringLike (and resource) matching: * any run of characters, even none; ? one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def _allowed(statements: list[dict[str, Any]], names: dict[str, str], request: Any) -> bool:
    action, arn, prefix = request
    for statement in statements:
        if action not in as_list(statement["Action"]):
            continue
        if not any(_like(_resolve(r, names), arn) for r in as_list(statement["Resource"])):
            continue
        condition = statement.get("Condition")
        if condition is not None:
            ((operator, tests),) = condition.items()
            assert operator == "StringLike", condition
            ((key, patterns),) = tests.items()
            assert key == "s3:prefix", condition
            if prefix is None or not any(_like(p, prefix) for p in as_list(patterns)):
                continue
        return True
    return False


def test_every_s3_request_of_the_snapshot_code_is_allowed_and_only_on_the_catalogue_prefix(
    template: Template, tmp_path: Path
) -> None:
    """S3Snapshots run against a recording client at the URI the stack gives the replicas:
    publish three (pruning one), read the pointer (missing, then present), download."""
    statements = role_statements(template)
    names = {bucket(template, "recserve-snapshots-"): SNAPSHOTS_BUCKET}
    s3 = _RecordingS3()
    snapshots = S3Snapshots(s3, f"s3://{SNAPSHOTS_BUCKET}/{recserve_stack.SNAPSHOT_PREFIX}")
    assert snapshots.pointer() is None
    for seq in ("7", "30", "500"):
        directory = tmp_path / seq
        directory.mkdir()
        for name in FILES.values():
            (directory / name).write_bytes(seq.encode())
        snapshots.publish(seq, 64, directory)
    pointer = snapshots.pointer()
    assert pointer is not None
    (tmp_path / "in").mkdir()
    snapshots.download(pointer, tmp_path / "in")
    actions = {action for action, _, _ in s3.requests}
    assert actions == {
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
    }
    prefixes = {prefix for action, _, prefix in s3.requests if action == "s3:ListBucket"}
    assert "recserve/catalogue/" in prefixes  # the bare prefix (the snapshots' folders)
    assert f"recserve/catalogue/{7:030d}/" in prefixes  # pruning the oldest
    assert "recserve/catalogue/latest.json" in prefixes  # NoSuchKey before the first
    for request in s3.requests:
        assert _allowed(statements, names, request), request

    # ... and nothing beside the prefix
    for request in [
        ("s3:GetObject", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}/recserve/other", None),
        ("s3:PutObject", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}/recserve/catalogue", None),
        ("s3:DeleteObject", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}/backups/x", None),
        ("s3:ListBucket", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}", None),  # no Prefix: everything
        ("s3:ListBucket", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}", ""),
        ("s3:ListBucket", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}", "recserve/"),
        ("s3:ListBucket", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}", "recserve/catalogue"),
        ("s3:DeleteObjectVersion", f"arn:aws:s3:::{SNAPSHOTS_BUCKET}/recserve/catalogue/x", None),
        ("s3:GetObject", "arn:aws:s3:::another-bucket/recserve/catalogue/latest.json", None),
    ]:
        assert not _allowed(statements, names, request), request


# ---- what the instances run ------------------------------------------------------------------


@pytest.fixture
def instance_env(template: Template) -> Iterator[dict[str, str]]:
    text = user_data(
        template,
        **{
            "AWS::Region": "eu-west-1",
            stream(template, "recserve-events")[0]: "recserve-events",
            stream(template, "recserve-catalogue")[0]: "recserve-catalogue",
            bucket(template, "recserve-snapshots-"): SNAPSHOTS_BUCKET,
        },
        **{logical_id(template, "AWS::CloudFront::Distribution"): "d111111abcdef8.cloudfront.net"},
        **{logical_id(template, "AWS::CloudFront::PublicKey"): "K2JCJMDEHXQW5F"},
    )
    env: dict[str, str] = {}
    for line in heredoc(text, recserve_stack.ENV_FILE).splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        assert len(words) == 2, line
        name, value = words[1].split("=", 1)
        env[name] = value
    return env


def test_the_instance_settings_are_ones_recserve_serve_accepts_beyond_loopback(
    instance_env: dict[str, str],
    template: Template,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("RECSERVE_"):
            monkeypatch.delenv(name)
    for name, value in instance_env.items():
        monkeypatch.setenv(name, value)
    # what recserve-start adds from SSM Parameter Store
    monkeypatch.setenv("RECSERVE_AUTH__ADMIN_KEYS", json.dumps(["sha256:" + "a" * 64]))
    monkeypatch.setenv("RECSERVE_AUTH__CLIENT_KEYS", json.dumps(["sha256:" + "b" * 64]))
    monkeypatch.setenv("RECSERVE_CLOUDFRONT__PRIVATE_KEY_FILE", str(tmp_path / "cloudfront.pem"))
    config = tmp_path / "recserve.toml"
    config.write_text("dims = 64\n")
    settings = load_settings(config)
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.events_source == "kinesis"
    assert settings.kinesis_stream == "recserve-events"
    assert settings.state_store == "dynamodb"
    assert settings.dynamodb_table_prefix == "recserve-"
    assert settings.create_tables is False
    assert settings.cloudfront.domain == "d111111abcdef8.cloudfront.net"
    assert settings.cloudfront.key_pair_id == "K2JCJMDEHXQW5F"
    assert settings.cloudfront.allowed_prefixes == ("videos/",)
    assert settings.catalog_stream == "recserve-catalogue"
    assert settings.snapshot_uri == f"s3://{SNAPSHOTS_BUCKET}/recserve"
    assert settings.dims == 64
    assert unprotected_listen(settings) is None  # keys configured: it may listen on 0.0.0.0
    tables = {
        t["Properties"]["TableName"]
        for t in template.find_resources("AWS::DynamoDB::Table").values()
    }
    assert tables == {f"{settings.dynamodb_table_prefix}{s}" for s in ("leases", "users")}


def test_the_replicas_are_told_the_catalogue_stream_and_the_snapshot_uri(
    instance_env: dict[str, str], template: Template
) -> None:
    assert instance_env["RECSERVE_CATALOG_STREAM"] == "recserve-catalogue"
    stream(template, instance_env["RECSERVE_CATALOG_STREAM"])  # the stack's one-shard stream
    uri = instance_env["RECSERVE_SNAPSHOT_URI"]
    assert uri == f"s3://{SNAPSHOTS_BUCKET}/recserve"
    assert parse_uri(uri) == (SNAPSHOTS_BUCKET, "recserve/")
    # where recserve writes: the prefix the role's S3 statements are on
    assert S3Snapshots(None, uri).prefix == "recserve/catalogue/"
    outputs = template.to_json()["Outputs"]
    assert outputs["CatalogueStream"]["Value"] == {"Ref": stream(template, "recserve-catalogue")[0]}
    assert outputs["SnapshotUri"]["Value"] == {
        "Fn::Join": [
            "",
            ["s3://", {"Ref": bucket(template, "recserve-snapshots-")}, "/recserve"],
        ]
    }


def test_the_user_data_installs_the_wheel_and_runs_recserve_serve_under_systemd(
    template: Template, tmp_path: Path
) -> None:
    text = user_data(template)
    assert "dnf install -y python3.11 python3.11-pip" in text
    assert (
        f"/opt/recserve/venv/bin/pip install --no-cache-dir '/opt/recserve/wheels/{WHEEL}[aws]'"
        in text
    )
    unit = heredoc(text, "/etc/systemd/system/recserve.service")
    assert "User=recserve" in unit
    assert "ExecStart=/opt/recserve/bin/recserve-start" in unit
    assert "systemctl enable --now recserve.service" in text
    start = heredoc(text, recserve_stack.START_SCRIPT)
    assert start.rstrip().endswith(
        "exec /opt/recserve/venv/bin/recserve serve --config /etc/recserve/recserve.toml"
    )
    assert "sha256:" not in text
    assert "PRIVATE KEY" not in text
    for name, script in (("user-data", text), ("recserve-start", start)):
        path = tmp_path / name
        path.write_text(script)
        checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, (name, checked.stderr)


def test_the_settings_file_from_context_reaches_the_instances_verbatim(
    synth: Synth, tmp_path: Path
) -> None:
    settings = 'dims = 64\n[feed]\nmax_per_creator = 1\n# a quote \' and a "$(dollar)"\n'
    path = tmp_path / "aws.toml"
    path.write_text(settings)
    _, template = synth(settings_file=str(path), settings_toml=None)
    (encoded,) = re.findall(
        r"echo (\S+) \| base64 -d > /etc/recserve/recserve.toml", user_data(template)
    )
    import base64

    assert base64.b64decode(encoded).decode() == settings


# ---- bad context ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"wheel_file": None}, "wheel_file"),
        ({"wheel_url": "https://example.com/" + WHEEL}, "exactly one of"),
        ({"wheel_file": "/nonexistent/" + WHEEL}, "no such file"),
        ({"wheel_file": None, "wheel_url": "http://example.com/" + WHEEL}, "https://"),
        (
            {
                "wheel_file": None,
                "wheel_url": "https://x/recserve-0.1-cp311-cp311-linux_x86_64.whl",
            },
            "aarch64",
        ),
        ({"cloudfront_public_key_file": None}, "cloudfront_public_key_file"),
        ({"instance_type": "c7i.large"}, "Graviton"),
        ({"max_capacity": "8"}, "one replica per shard"),
        ({"min_capacity": "5"}, "min_capacity"),
        ({"max_capacity": "many"}, "'max_capacity' must be an integer"),
        ({"certificate_arn": None}, "certificate_arn"),
        ({"allow_http": "yes", "certificate_arn": None}, "allow_http"),
        ({"name": "Recserve_Prod"}, "'name'"),
        ({"media_allowed_prefixes": "videos/"}, "media_allowed_prefixes"),
        ({"media_allowed_prefixes": []}, "media_allowed_prefixes"),
        ({"admin_keys_parameter": "bad name"}, "admin_keys_parameter"),
        ({"settings_toml": None}, "must set dims"),
        ({"settings_toml": "[feed]\nmax_per_creator = 1\n"}, "must set dims"),
        ({"settings_toml": 'dims = "64"\n'}, "must set dims"),
        ({"settings_toml": "dims = 64\n[feed\n"}, "is not TOML"),
    ],
)
def test_bad_context_is_a_config_error_naming_the_key(
    synth: Synth, context: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        synth(**context)


def test_the_app_exits_with_the_error_when_context_is_missing(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "app.py"],
        cwd=APP_DIR,
        env={**os.environ, "CDK_OUTDIR": str(tmp_path), "CDK_CONTEXT_JSON": json.dumps({})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "error: exactly one of the contexts 'wheel_file'" in run.stderr


def test_cdk_json_runs_the_app_with_the_documented_defaults() -> None:
    cdk_json = json.loads((APP_DIR / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
    context = cdk_json["context"]
    assert context["instance_type"] == "c7g.large"
    defaults = StackConfig.__dataclass_fields__
    for key, value in context.items():
        default = defaults[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key
