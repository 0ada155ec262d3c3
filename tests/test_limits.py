"""Every configured limit, crossed: the right dead-letter code, and memory that stays bounded.

Each case runs in a fresh interpreter through the same calls the worker makes for a message
(`parse_message` -> `ObjectFetcher.fetch` -> `sample_video`), configured by SKYRA_* variables,
and reports its dead-letter code and how much its peak RSS grew after the input was ready.
Peak RSS of a fresh process counts what FFmpeg and boto3 allocate in C as well, which
tracemalloc would not see. The end-to-end worker path for the same inputs is the chaos
campaign's (`make chaos`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyra_stream.media.samples import VideoSpec, write_video

MiB = 1 << 20
pytestmark = pytest.mark.subprocess

BUCKET = "limits"

# Runs in the child. The input is prepared first (and counted in the baseline), then the
# worker's steps run and the growth of the peak RSS is reported with the code.
CHILD = r"""
import json, os, sys
from skyra_stream.errors import SkyraError
from skyra_stream.events import parse_message
from skyra_stream.media.fetch import ObjectFetcher
from skyra_stream.media.decode import sample_video
from skyra_stream.settings import Settings
from skyra_stream.runtime.configs import fetch_config
from skyra_stream.runtime.configs import decode_limits

def peak():
    # VmHWM: the high-water mark of resident memory, C allocations included.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current RSS
        f.write("5")

settings = Settings()
raw = open(sys.argv[1], "rb").read() if sys.argv[1] != "-" else None
if raw is None:
    raw = json.dumps({"event_id": "e", "video_id": "v", "uri": os.environ["URI"]}).encode()
if os.environ.get("PAD_MESSAGE"):
    raw = raw + b" " * int(os.environ["PAD_MESSAGE"])
fetcher = ObjectFetcher(fetch_config(settings))
reset_peak()
before = peak()
code = None
if os.environ.get("ALLOCATE"):  # the harness's own check: memory it must see
    ballast = bytearray(int(os.environ["ALLOCATE"]))
    ballast[::4096] = b"x" * len(ballast[::4096])
try:
    [event] = parse_message(
        raw,
        max_message_bytes=settings.max_message_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
    )
    obj = fetcher.fetch(event.uri, version_id=event.version_id, expected_size=event.size_bytes)
    with obj:
        sample_video(obj.body, decode_limits(settings))
except SkyraError as exc:
    code = exc.code.value
print(json.dumps({"code": code, "growth": peak() - before}))
"""


def run_case(
    tmp_path: Path, env: dict[str, str], raw: bytes | None = None, **extra: str
) -> tuple[str | None, int]:
    message = "-"
    if raw is not None:
        path = tmp_path / "message.json"
        path.write_bytes(raw)
        message = str(path)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, message],
        env={**os.environ, **env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], int(result["growth"])


@pytest.fixture(scope="module")
def objects(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Objects in moto that cross each limit, and the environment that sets the limits."""
    import boto3

    folder = tmp_path_factory.mktemp("limits")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    small = write_video(folder / "small.mp4", VideoSpec(frames=30))
    s3.upload_file(str(small), BUCKET, "small.mp4")
    s3.put_object(Bucket=BUCKET, Key="huge.bin", Body=b"\0" * (64 * MiB))
    bomb = write_video(
        folder / "bomb.mp4",
        VideoSpec(width=7680, height=4320, frames=2, options={"preset": "ultrafast"}),
    )
    s3.upload_file(str(bomb), BUCKET, "bomb.mp4")
    forty = write_video(
        folder / "forty.mp4",
        VideoSpec(width=64, height=64, fps=1, frames=40 * 60, options={"preset": "ultrafast"}),
    )
    s3.upload_file(str(forty), BUCKET, "forty.mp4")
    slow = write_video(folder / "slow.mp4", VideoSpec(width=640, height=480, frames=300, gop=300))
    s3.upload_file(str(slow), BUCKET, "slow.mp4")
    return {
        "SKYRA_S3_ENDPOINT_URL": moto_server,
        "SKYRA_S3_ALLOWED_BUCKETS": BUCKET,
        "SKYRA_MAX_OBJECT_BYTES": str(8 * MiB),
        "SKYRA_MAX_MESSAGE_BYTES": str(64 * 1024),
        "SKYRA_MAX_METADATA_BYTES": "1024",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


# Bounds on peak RSS growth: far below what crossing the limit would have cost (a 64 MiB
# object, 33 Mpixel frames, a 40-minute decode, a 16 MiB message parsed as JSON). The first
# S3 call itself costs ~15 MiB (botocore loads the service model lazily), and before
# FFmpeg's max_pixels went into the probe the 8K bomb cost ~97 MiB here.
CASES = [
    pytest.param(
        {"URI": f"s3://{BUCKET}/huge.bin"}, "object_too_large", 32 * MiB, id="object-bytes"
    ),
    pytest.param(
        {"URI": f"s3://{BUCKET}/bomb.mp4"}, "video_too_large", 48 * MiB, id="pixels-8k-bomb"
    ),
    pytest.param(
        {"URI": f"s3://{BUCKET}/forty.mp4"}, "video_too_long", 48 * MiB, id="duration-40min"
    ),
    pytest.param(
        {"URI": f"s3://{BUCKET}/slow.mp4", "SKYRA_DECODE_TIMEOUT_S": "0.05"},
        "decode_timeout",
        96 * MiB,
        id="decode-wall-time",
    ),
    pytest.param(
        {"URI": f"s3://{BUCKET}/small.mp4", "PAD_MESSAGE": str(16 * MiB)},
        "message_too_large",
        4 * MiB,
        id="message-size",
    ),
]


@pytest.mark.parametrize(("env", "code", "bound"), CASES)
def test_limit_crossed(
    objects: dict[str, str], tmp_path: Path, env: dict[str, str], code: str, bound: int
) -> None:
    got, growth = run_case(tmp_path, objects, **env)
    print(f"{code}: peak RSS +{growth / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB)")
    assert got == code
    assert growth < bound, f"peak RSS grew {growth / MiB:.1f} MiB"


def test_metadata_limit_crossed(objects: dict[str, str], tmp_path: Path) -> None:
    raw = json.dumps(
        {
            "event_id": "e",
            "video_id": "v",
            "uri": f"s3://{BUCKET}/small.mp4",
            "metadata": {f"k{i}": "x" * 100 for i in range(20)},
        }
    ).encode()
    got, growth = run_case(tmp_path, objects, raw)
    assert got == "invalid_event"
    assert growth < 4 * MiB


def test_declared_size_is_refused_before_any_request(
    objects: dict[str, str], tmp_path: Path
) -> None:
    raw = json.dumps(
        {"event_id": "e", "video_id": "v", "uri": f"s3://{BUCKET}/small.mp4", "size_bytes": 9 * MiB}
    ).encode()
    got, _ = run_case(tmp_path, {**objects, "SKYRA_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, raw)
    assert got == "object_too_large"  # port 9 answers nothing: no request was needed


def test_the_harness_sees_what_it_measures(objects: dict[str, str], tmp_path: Path) -> None:
    got, growth = run_case(
        tmp_path, objects, URI=f"s3://{BUCKET}/small.mp4", ALLOCATE=str(32 * MiB)
    )
    assert got is None  # a good video goes through the same path
    assert growth >= 32 * MiB  # and memory it allocates shows
