"""Models: listing, activation, hot swap under load without a failed request, and the choice
surviving a restart."""

from __future__ import annotations

import threading
import time
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
from http_server import item_batch, make_server

from recserve import mlp

DIMS = 64


def write_other_model(path: Path, seed: int) -> None:
    """A second servable model: the built-in one's layout and features, other weights."""
    builtin = mlp.Model.load(str(resources.files("recserve") / "models" / "default.rsm"))
    assert isinstance(builtin, mlp.QuantizedModel)
    reference = builtin.dequantized()
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in reference.weights]
    model = mlp.Model.from_numpy(
        weights=weights,
        biases=[b.copy() for b in reference.biases],
        heads=reference.heads,
        activations=reference.activations,
        metadata=builtin.metadata,
    )
    calibration = rng.standard_normal((256, reference.input_dim)).astype(np.float32)
    model.quantize(calibration).save(str(path))


def test_models_list_activate_and_hot_swap_under_load(make_server) -> None:
    server = make_server(f"dims = {DIMS}\n")
    models = server.data_dir / "models"
    models.mkdir(parents=True)
    write_other_model(models / "v2.rsm", seed=1)
    (models / "broken.rsm").write_bytes(b"RSM\x00 not a model at all")
    server.start()
    with server.client() as client:
        items = item_batch(500, seed=41)
        rng = np.random.default_rng(41)
        for item in items:
            item["embedding"] = [float(x) for x in rng.standard_normal(DIMS)]
        assert client.post("/v1/items", json={"items": items}).status_code == 200

        listed = client.get("/v1/models").json()
        assert listed["active"] == "builtin"
        by_version = {m["version"]: m for m in listed["models"]}
        assert by_version["builtin"]["active"]
        assert by_version["builtin"]["servable"]
        assert by_version["v2"]["servable"]
        assert not by_version["v2"]["active"]
        assert not by_version["broken"]["servable"]
        assert client.post("/v1/models/nope/activate").status_code == 404
        assert client.post("/v1/models/broken/activate").status_code == 422
        assert client.get("/v1/models").json()["active"] == "builtin"

        failures: list[str] = []
        versions: set[str] = set()
        served: list[int] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            with server.client() as own:
                i = 0
                while not stop.is_set():
                    i += 1
                    user = f"load-{worker}-{i % 20}"
                    response = own.get(f"/v1/feed/{user}")
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                        continue
                    versions.add(response.json()["model_version"])
                    served.append(1)
                    item = response.json()["items"][0]["item_id"]
                    posted = own.post(
                        "/v1/events",
                        json={
                            "events": [
                                {
                                    "event_id": f"{worker}-{i}",
                                    "user_id": user,
                                    "item_id": item,
                                    "type": "watch",
                                    "watch_ms": 9000,
                                }
                            ]
                        },
                    )
                    if posted.status_code != 202:
                        failures.append(f"{posted.status_code} {posted.text}")

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for swap in range(10):
            version = "v2" if swap % 2 == 0 else "builtin"
            assert client.post(f"/v1/models/{version}/activate").json() == {"active": version}
            goal = len(served) + 8  # let some requests run on this model before the next swap
            while len(served) < goal and not failures:
                time.sleep(0.005)
        assert client.post("/v1/models/v2/activate").status_code == 200
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert versions == {"builtin", "v2"}
        assert client.get("/v1/feed/after-swap").json()["model_version"] == "v2"

    assert server.stop() == 0
    server.start()
    with server.client() as client:
        assert client.get("/v1/models").json()["active"] == "v2"
        assert client.get("/v1/feed/after-restart").json()["model_version"] == "v2"
    server.stop()


def test_a_missing_model_named_in_configuration_is_reported_not_ready(make_server) -> None:
    server = make_server(f'dims = {DIMS}\nmodel = "not-there"\n')
    server.launch()
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"{server.url}/readyz", timeout=1.0)
            if response.json().get("status") == "failed":
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert response.status_code == 503
    assert "not-there" in response.json()["detail"]
    assert httpx.get(f"{server.url}/v1/feed/u1").status_code == 503
    server.stop()


BAD_VERSIONS = [
    "a" * 300,  # an OSError (file name too long) and a 500 before versions were checked
    "a" * 65,
    ".hidden",
    "..",
    "v 1",
    "v:1",
    "v*",
    "v\u00fc",
    "v%2F..%2Fv2",
]


def test_a_malformed_model_version_is_404_not_500(make_server) -> None:
    server = make_server(f"dims = {DIMS}\n")
    models = server.data_dir / "models"
    models.mkdir(parents=True)
    write_other_model(models / "v2.rsm", seed=1)
    (models / "v 2.rsm").write_bytes((models / "v2.rsm").read_bytes())  # not a version's name
    server.start()
    with server.client() as client:
        # "a" * 64: well-formed, no such file; "v 2": a file, but not a version's name
        for version in [*BAD_VERSIONS, "a" * 64, "v 2"]:
            response = client.post(f"/v1/models/{version}/activate")
            assert response.status_code == 404, (version[:70], response.text[:200])
        assert [m["version"] for m in client.get("/v1/models").json()["models"]] == [
            "builtin", "v2"
        ]
        assert client.post("/v1/models/v2/activate").json() == {"active": "v2"}
    server.stop()
