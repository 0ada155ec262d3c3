"""Presigned links: a reviewer's browser plays the upload straight from object storage.

The review console puts the video itself on each Label Studio task, not a copy and not frames:
temporal artifacts (jitter, identity drift, objects that merge or vanish) are judged by watching
motion, which 16 stills cannot show, and a presigned GET streams with range requests from the
bucket that already holds the object, so nothing is copied and access ends by itself. Only
objects in the allowed buckets are linked (the same allowlist as fetching); anything else gets
no link, and the task says so instead of showing a video. The lifetime is bounded by
configuration and by SigV4 itself (at most 7 days). A link carries its own expiry
(`expires_at`), so the console can re-sign the links of tasks still in the queue before they
lapse, without keeping any state of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config

from skyra_stream.errors import SkyraError
from skyra_stream.media.fetch import FetchConfig, resolve_uri
from skyra_stream.messages import Source

MAX_TTL_S = 7 * 24 * 3600


class VideoLinks:
    def __init__(self, config: FetchConfig, ttl_s: int, public_endpoint_url: str | None = None):
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"a presigned URL lives between 1 s and {MAX_TTL_S} s, not {ttl_s}")
        self.config = config
        self.ttl_s = ttl_s
        # The endpoint as browsers reach it (an ingress), which may differ from the in-cluster one.
        endpoint = public_endpoint_url or config.s3_endpoint_url
        # SigV4 (SigV2 links are deprecated and carry no lifetime limit of their own); signing
        # is local, so no timeouts or retries matter here.
        self._s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=config.s3_region or "us-east-1",
            config=botocore.config.Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint else "auto"},
            ),
        )

    def url(self, source: Source) -> str | None:
        """A time-limited GET link to the source's object, or None when it cannot be served."""
        try:
            location = resolve_uri(source.uri, self.config)
        except SkyraError:
            return None
        if location.scheme != "s3":
            return None
        params = {"Bucket": location.bucket, "Key": location.key}
        if source.version_id:
            params["VersionId"] = source.version_id
        url: str = self._s3.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.ttl_s
        )
        return url


def expires_at(url: str) -> datetime | None:
    """When a SigV4 presigned link stops working (its `X-Amz-Date` plus `X-Amz-Expires`), or
    None for anything else: no link, another scheme of signing, a malformed query."""
    query = parse_qs(urlsplit(url).query)
    signed, lifetime = query.get("X-Amz-Date", [""])[0], query.get("X-Amz-Expires", [""])[0]
    if not lifetime.isdigit() or len(lifetime) > 7:
        return None
    try:
        start = datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return start + timedelta(seconds=int(lifetime))
