"""Uploads to async jobs, written to a staging bucket so that the job can ride the ingest
topic like any other upload (the worker then reads it through the same allowlist)."""

from __future__ import annotations

import re
from typing import IO

from skyra_stream.media.fetch import FetchConfig, make_s3_client


def safe_name(filename: str | None) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", filename or "")[:120].strip("._")
    return name or "video"


class Stager:
    """Puts one upload into `bucket` and names it by URI."""

    def __init__(self, config: FetchConfig, bucket: str) -> None:
        if bucket not in config.s3_allowed_buckets:
            raise ValueError(f"staging bucket {bucket!r} is not among the allowed buckets")
        self.config = config
        self.bucket = bucket
        self._s3 = make_s3_client(config)

    def stage(self, body: IO[bytes], key: str) -> str:
        self._s3.upload_fileobj(body, self.bucket, key)
        return f"s3://{self.bucket}/{key}"


class ObjectWriter:
    """Writes small objects (verdict receipts) into the allowed buckets, and only there."""

    def __init__(self, config: FetchConfig) -> None:
        self.config = config
        self._s3 = make_s3_client(config)

    def put(self, bucket: str, key: str, body: bytes, content_type: str) -> str:
        if bucket not in self.config.s3_allowed_buckets:
            raise ValueError(f"bucket {bucket!r} is not among the allowed buckets")
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        return f"s3://{bucket}/{key}"
