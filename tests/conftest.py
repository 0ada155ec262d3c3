from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.faulty_proxy import FaultyProxy

# Credentials for the loopback S3 endpoint only; set before any client is made.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real S3-compatible HTTP endpoint on loopback."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_proxy(moto_server: str) -> Iterator[FaultyProxy]:
    """The moto endpoint behind a proxy that can inject 5xx, 403 and stalls."""
    host, port = moto_server.removeprefix("http://").split(":")
    proxy = FaultyProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_admin(moto_server: str):  # type: ignore[no-untyped-def]
    """A boto3 client straight to moto, for setting up buckets and objects."""
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")
