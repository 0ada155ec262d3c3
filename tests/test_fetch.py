"""Object fetch against a real S3 endpoint (moto on loopback) with injected faults."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from skyra_stream.devstack.faulty_proxy import Fault, FaultyProxy
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.media.fetch import FetchConfig, ObjectFetcher, resolve_uri
from skyra_stream.runtime.configs import fetch_config
from skyra_stream.settings import Settings


@pytest.fixture
def bucket(s3_admin) -> str:  # type: ignore[no-untyped-def]
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture
def fetcher(s3_proxy: FaultyProxy, bucket: str, tmp_path: Path) -> ObjectFetcher:
    s3_proxy.clear()
    settings = Settings(
        s3_endpoint_url=s3_proxy.url,
        s3_allowed_buckets=[bucket],
        s3_read_timeout_s=1.0,
        s3_connect_timeout_s=1.0,
        s3_retry_max_wait_s=0.05,
        s3_max_attempts=4,
        max_object_bytes=1_000_000,
        local_roots=[tmp_path / "root"],
        spool_memory_bytes=1024,
    )
    return ObjectFetcher(fetch_config(settings))


def _code(fn, *args, **kwargs) -> ErrorCode:  # type: ignore[no-untyped-def]
    with pytest.raises(SkyraError) as err:
        fn(*args, **kwargs)
    return err.value.code


def test_fetches_an_allowed_object(fetcher: ObjectFetcher, s3_admin, bucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(300_000)
    s3_admin.put_object(Bucket=bucket, Key="v/a b.mp4", Body=data, ContentType="video/mp4")
    with fetcher.fetch(f"s3://{bucket}/v/a b.mp4") as obj:
        assert obj.body.read() == data
        assert obj.size == len(data)
        assert obj.content_type == "video/mp4"
        assert obj.etag
        assert obj.attempts == 1


def test_version_id_is_pinned(fetcher: ObjectFetcher, s3_admin, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3_admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3_admin.put_object(Bucket=bucket, Key="k", Body=b"first")["VersionId"]
    s3_admin.put_object(Bucket=bucket, Key="k", Body=b"second")
    with fetcher.fetch(f"s3://{bucket}/k", version_id=v1) as obj:
        assert obj.body.read() == b"first"
        assert obj.version_id == v1
    with fetcher.fetch(f"s3://{bucket}/k") as obj:
        assert obj.body.read() == b"second"
    missing = "0" * 32
    assert _code(fetcher.fetch, f"s3://{bucket}/k", version_id=missing) is (
        ErrorCode.OBJECT_NOT_FOUND
    )


def test_missing_object(fetcher: ObjectFetcher, bucket: str, s3_proxy: FaultyProxy) -> None:
    assert _code(fetcher.fetch, f"s3://{bucket}/nope.mp4") is ErrorCode.OBJECT_NOT_FOUND
    assert len(s3_proxy.requests) == 1  # 404 is not retried


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/a.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "https://example.com/a.mp4",
        "file:///etc/passwd",
        "ftp://x/y",
        "gs://b/k",
        "S3://{bucket}/a.mp4",
        "s3://{bucket}",
        "s3://{bucket}/",
        "s3://user@{bucket}/a.mp4",
        "/etc/passwd",
        "",
    ],
)
def test_disallowed_uris_never_reach_the_network(
    fetcher: ObjectFetcher, bucket: str, s3_proxy: FaultyProxy, uri: str
) -> None:
    assert _code(fetcher.fetch, uri.format(bucket=bucket)) is ErrorCode.URI_NOT_ALLOWED
    assert s3_proxy.requests == []


def test_object_too_large_by_event_header_and_stream(
    fetcher: ObjectFetcher,
    s3_admin,
    bucket: str,
    s3_proxy: FaultyProxy,  # type: ignore[no-untyped-def]
) -> None:
    s3_admin.put_object(Bucket=bucket, Key="big", Body=b"x" * 1_500_000)
    uri = f"s3://{bucket}/big"
    assert _code(fetcher.fetch, uri, expected_size=2_000_000) is ErrorCode.OBJECT_TOO_LARGE
    assert s3_proxy.requests == []  # the event's own size claim is enough
    assert _code(fetcher.fetch, uri) is ErrorCode.OBJECT_TOO_LARGE
    assert len(s3_proxy.requests) == 1


def test_503_is_retried_then_succeeds(
    fetcher: ObjectFetcher,
    s3_admin,
    bucket: str,
    s3_proxy: FaultyProxy,  # type: ignore[no-untyped-def]
) -> None:
    s3_admin.put_object(Bucket=bucket, Key="a", Body=b"video bytes")
    s3_proxy.inject(2, Fault(status=503, code="SlowDown"))
    with fetcher.fetch(f"s3://{bucket}/a") as obj:
        assert obj.body.read() == b"video bytes"
        assert obj.attempts == 3
    assert len(s3_proxy.requests) == 3


def test_persistent_503_gives_up_as_transient_fetch_failed(
    fetcher: ObjectFetcher,
    s3_admin,
    bucket: str,
    s3_proxy: FaultyProxy,  # type: ignore[no-untyped-def]
) -> None:
    s3_admin.put_object(Bucket=bucket, Key="a", Body=b"video bytes")
    s3_proxy.inject(10, Fault(status=503))
    with pytest.raises(SkyraError) as err:
        fetcher.fetch(f"s3://{bucket}/a")
    assert err.value.code is ErrorCode.FETCH_FAILED
    assert err.value.transient
    assert len(s3_proxy.requests) == 4  # s3_max_attempts


def test_stalled_response_times_out_and_is_retried(
    fetcher: ObjectFetcher,
    s3_admin,
    bucket: str,
    s3_proxy: FaultyProxy,  # type: ignore[no-untyped-def]
) -> None:
    s3_admin.put_object(Bucket=bucket, Key="a", Body=b"video bytes")
    s3_proxy.inject(1, Fault(status=0, delay_s=2.5))  # longer than the 1 s read timeout
    with fetcher.fetch(f"s3://{bucket}/a") as obj:
        assert obj.body.read() == b"video bytes"
        assert obj.attempts == 2


def test_403_is_access_denied_without_retry(
    fetcher: ObjectFetcher, bucket: str, s3_proxy: FaultyProxy
) -> None:
    s3_proxy.inject(1, Fault(status=403, code="AccessDenied"))
    assert _code(fetcher.fetch, f"s3://{bucket}/secret") is ErrorCode.ACCESS_DENIED
    assert len(s3_proxy.requests) == 1


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    settings = Settings(
        s3_endpoint_url="http://127.0.0.1:9",
        s3_allowed_buckets=["b"],
        s3_max_attempts=2,
        s3_retry_max_wait_s=0.01,
        s3_connect_timeout_s=0.5,
    )
    with pytest.raises(SkyraError) as err:
        ObjectFetcher(fetch_config(settings)).fetch("s3://b/k")
    assert (err.value.code, err.value.transient) == (ErrorCode.FETCH_FAILED, True)


# -- local files ---------------------------------------------------------------------------


def test_local_files_only_under_roots(fetcher: ObjectFetcher, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "v.mp4").write_bytes(b"data")
    (tmp_path / "outside.mp4").write_bytes(b"secret")
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    with fetcher.fetch(f"file://{root}/sub/v.mp4") as obj:
        assert obj.body.read() == b"data"
    for uri in (
        f"file://{root}/../outside.mp4",
        f"file://{root}/sub/../../outside.mp4",
        f"file://{root}/link.mp4",
        f"file://{root}%2F..%2Foutside.mp4",
        f"file://evil.example.com{root}/sub/v.mp4",
        "file:///etc/passwd",
    ):
        assert _code(fetcher.fetch, uri) is ErrorCode.URI_NOT_ALLOWED, uri
    assert _code(fetcher.fetch, f"file://{root}/missing.mp4") is ErrorCode.OBJECT_NOT_FOUND
    assert _code(fetcher.fetch, f"file://{root}/sub") is ErrorCode.OBJECT_NOT_FOUND


def test_local_file_size_cap(fetcher: ObjectFetcher, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.mp4").write_bytes(b"x" * 1_000_001)
    assert _code(fetcher.fetch, f"file://{root}/big.mp4") is ErrorCode.OBJECT_TOO_LARGE


def test_file_uris_refused_without_roots() -> None:
    with pytest.raises(SkyraError) as err:
        resolve_uri("file:///tmp/a.mp4", FetchConfig())
    assert err.value.code is ErrorCode.URI_NOT_ALLOWED
