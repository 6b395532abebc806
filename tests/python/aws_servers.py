"""Real local AWS endpoints for the tests, on 127.0.0.1 with free ports: moto's server
(DynamoDB, single-producer Kinesis) and kinesalite from npm (resharding, concurrent producers),
plus a boto3 client wrapper that injects the faults no local server produces.

kinesalite is found in ``$KINESALITE_MODULES`` or ``build/npm/node_modules`` (``.ci/run``
installs it there). Without it the tests that need it skip, unless
``RECSERVE_REQUIRE_AWS_SERVERS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
_START_KINESALITE = """
const kinesalite = require('kinesalite');
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
                           shardLimit: 100});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


def aws_env(endpoint: str) -> dict[str, str]:
    """The environment a recserve process needs to reach this endpoint: boto3's own names."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


class _OneRequestAtATime:
    """AWS applies each request atomically; moto's models are not thread-safe. A failed
    TransactWriteItems, for one, puts back a copy of the whole table taken when it began (moto
    5.x), undoing what other requests wrote meanwhile. So the tests' server takes one request at
    a time (clients still interleave their requests as they please)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            body = self.app(environ, start_response)
            try:
                return list(body)
            finally:
                if hasattr(body, "close"):  # WSGI: the caller closes what the app returned
                    body.close()


def _kinesalite_modules() -> Path | None:
    for candidate in (os.environ.get("KINESALITE_MODULES"), REPO / "build/npm/node_modules"):
        if candidate and (Path(candidate) / "kinesalite").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def kinesalite_endpoint() -> Iterator[str]:
    modules = _kinesalite_modules()
    if modules is None:
        message = "kinesalite is not installed (npm install --prefix build/npm kinesalite)"
        if os.environ.get("RECSERVE_REQUIRE_AWS_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    process = subprocess.Popen(
        ["node", "-e", _START_KINESALITE],
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


def new_stream(kinesis: Any, shards: int) -> str:
    name = f"events-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    return name


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


class Faulty:
    """A boto3 client whose named calls fail as planned: ``plan[op]`` decides per call (the
    call's number) whether to raise, e.g. ``{"get_records": lambda n: n % 3 == 1}``. Anything
    else is the real client's."""

    def __init__(self, real: Any, plan: dict[str, Callable[[int], str | None]]) -> None:
        self._real = real
        self._plan = plan
        self.calls: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name not in self._plan:
            return attribute

        def call(**kwargs: Any) -> Any:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            fault = self._plan[name](n)
            if fault == "partial":  # PutRecords: every other entry refused, the rest put
                return self._partial_put(**kwargs)
            if fault:
                self.injected[fault] = self.injected.get(fault, 0) + 1
                raise ClientError({"Error": {"Code": fault, "Message": "injected"}}, name)
            return attribute(**kwargs)

        return call

    def _partial_put(self, **kwargs: Any) -> Any:
        records = kwargs["Records"]
        kept = records[::2]
        response = self._real.put_records(**{**kwargs, "Records": kept})
        out, results = [], iter(response["Records"])
        for i in range(len(records)):
            if i % 2 == 0:
                out.append(next(results))
            else:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException",
                            "ErrorMessage": "injected"})
        self.injected["partial"] = self.injected.get("partial", 0) + len(records) - len(kept)
        return {"FailedRecordCount": len(records) - len(kept), "Records": out}
