"""Where models live and which one serves: serving.json in a directory or under an S3 prefix
(moto's server), read back as written; replicas sharing an S3 prefix follow an activation and
a trial made on one of them (real processes)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from http_server import item_batch, make_server  # noqa: F401  (fixture)
from test_http_models import DIMS, write_other_model

from aws_servers import CREDENTIALS, client
from recserve.service.model_store import DirectoryModels, S3Models, Serving


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"active": "v 1"}, "not a model version"),
        ({"active": "v1", "trial": "v2", "trial_share": 0.0}, "trial_share"),
        ({"active": "v1", "trial": "v2", "trial_share": 0.6}, "trial_share"),
        ({"active": "v1", "trial": "v1", "trial_share": 0.1}, "active model already"),
    ],
)
def test_a_bad_serving_choice_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Serving(**fields)


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"trial": "v2"}', b'{"active": "../x"}'])
def test_a_serving_file_that_does_not_parse_names_itself(body: bytes) -> None:
    with pytest.raises(ValueError, match="models/serving.json"):
        Serving.from_json(body, "models/serving.json")


def test_a_directory_keeps_the_choice_and_the_models(tmp_path: Path) -> None:
    store = DirectoryModels(tmp_path / "models")
    assert store.read_serving() is None
    assert store.versions() == []
    choice = Serving("v2", "v3", 0.25)
    store.write_serving(choice)
    assert store.read_serving() == choice
    (tmp_path / "m.rsm").write_bytes(b"model")
    store.publish(tmp_path / "m.rsm", "v3")
    assert store.versions() == ["v3"]


def test_an_s3_prefix_keeps_the_choice_and_caches_the_models(
    moto_endpoint: str, tmp_path: Path
) -> None:
    s3 = client("s3", moto_endpoint)
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    store = S3Models(s3, f"s3://{bucket}/svc", tmp_path / "cache")
    assert store.read_serving() is None
    (tmp_path / "m.rsm").write_bytes(b"model bytes")
    store.publish(tmp_path / "m.rsm", "v7")
    store.write_serving(Serving("v7"))
    assert store.versions() == ["v7"]
    assert store.read_serving() == Serving("v7")
    store.fetch("v7")
    assert (tmp_path / "cache" / "v7.rsm").read_bytes() == b"model bytes"
    store.fetch("missing")  # absent in S3: no file, so the registry says unknown
    assert not (tmp_path / "cache" / "missing.rsm").exists()


def feed_versions(server: Any, users: int = 40) -> dict[str, str]:
    """Each user's (model_version, experiment) on their next page."""
    out = {}
    with server.client() as http:
        for u in range(users):
            page = http.get(f"/v1/feed/u{u}").json()
            out[f"u{u}"] = (page["model_version"], page["experiment"])
    return out


def test_replicas_sharing_an_s3_models_prefix_follow_activations_and_trials(
    moto_endpoint: str, make_server: Any, tmp_path: Path
) -> None:
    s3 = client("s3", moto_endpoint)
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for version, seed in (("v2", 1), ("v3", 2)):
        write_other_model(tmp_path / f"{version}.rsm", seed)
        s3.upload_file(str(tmp_path / f"{version}.rsm"), bucket, f"models/{version}.rsm")
    config = f'dims = {DIMS}\nmodels_dir = "s3://{bucket}/models"\nmodel_poll_s = 0.3\n'
    config += "[feed]\nprecompute = false\n"
    replicas = []
    for name in ("a", "b"):
        server = make_server(config, name)
        server.env = CREDENTIALS | {"AWS_ENDPOINT_URL": moto_endpoint}
        replicas.append(server.start())
    a, b = replicas
    rng = np.random.default_rng(5)
    items = item_batch(200, seed=5)
    for item in items:
        item["embedding"] = [float(x) for x in rng.standard_normal(DIMS)]
    for server in replicas:
        with server.client() as http:
            assert http.post("/v1/items", json={"items": items}).status_code == 200

    with a.client() as http:
        assert http.post("/v1/models/v2/activate").json() == {"active": "v2"}
    until(lambda: set(feed_versions(b).values()) == {("v2", None)})

    with a.client() as http:
        started = http.post("/v1/models/v3/trial", json={"share": 0.25})
        assert started.json() == {"active": "v2", "trial": "v3", "trial_share": 0.25}
        assert http.get("/v1/models").json()["trial"] == {"version": "v3", "share": 0.25}
    until(lambda: {e for _, e in feed_versions(b).values()} == {"trial:control", "trial:v3"})
    seen = feed_versions(b, users=200)
    on_trial = [u for u, (_, e) in seen.items() if e == "trial:v3"]
    assert all(seen[u][0] == "v3" for u in on_trial)
    assert 0.1 < len(on_trial) / 200 < 0.4  # about a quarter of users, by a stable hash
    assert feed_versions(a, users=200) == seen  # the same users on every replica

    with b.client() as http:
        assert http.delete("/v1/models/trial").json() == {"active": "v2"}
        assert http.delete("/v1/models/trial").status_code == 404
        assert http.post("/v1/models/v9/trial", json={"share": 0.1}).status_code == 404
        assert http.post("/v1/models/v3/trial", json={"share": 0.9}).status_code == 422
    until(lambda: set(feed_versions(a).values()) == {("v2", None)})
    with a.client() as http:
        text = http.get("/metrics").text
    assert re.search(r'recserve_feeds_served_total\{arm="v3",experiment="trial"\} [1-9]', text)


def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        time.sleep(0.1)
