"""C2PA provenance of uploads, signed here with a throwaway chain: what is read from valid,
camera, tampered and garbage manifests, and how the analysis path acts on it (a skip rule
decides without the engine; an invalid manifest never stops the model). Fake engine."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyra_stream.analysis import Analysis, FileInput, Job, StreamInput
from skyra_stream.devstack.credentials import (
    CAPTURED,
    GENERATED,
    SigningChain,
    garble_manifest,
    make_chain,
    sign_mp4,
    tamper,
)
from skyra_stream.media.provenance import ProvenanceConfig, ProvenanceReader, find_c2pa_box
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

POLICY = """
version: "7"
default:
  id: platform
  otherwise: allow
  rules:
    - {name: declared-ai, action: block, skip_model: true,
       when: {provenance: [trusted, untrusted], declares_generated: true}}
    - {name: broken-credentials, action: review, when: {provenance: [invalid]}}
tenants:
  lenient: {id: lenient, otherwise: allow, rules: []}
  strict: {id: strict, otherwise: block, rules: []}
"""


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return make_chain()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, chain: SigningChain) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("c2pa")
    plain = folder / "plain.mp4"
    write_video(plain, VideoSpec(width=96, height=64, frames=24, seed=3))
    raw = plain.read_bytes()
    made = {
        "plain": raw,
        "ai": sign_mp4(raw, chain, digital_source_type=GENERATED),
        "camera": sign_mp4(raw, chain, digital_source_type=CAPTURED),
    }
    made["tampered"] = tamper(made["ai"])
    made["garbage"] = garble_manifest(made["ai"])
    out = {}
    for name, data in made.items():
        out[name] = folder / f"{name}.mp4"
        out[name].write_bytes(data)
    (folder / "anchors.pem").write_bytes(chain.root_pem)
    out["anchors"] = folder / "anchors.pem"
    return out


def read(path: Path, reader: ProvenanceReader | None = None) -> object:
    with path.open("rb") as body:
        got = (reader or ProvenanceReader()).read(body)
        assert body.tell() == 0  # left where the decoder starts
    return got


def test_no_manifest_is_absent_and_never_reaches_the_library(files: dict[str, Path]) -> None:
    with files["plain"].open("rb") as body:
        assert find_c2pa_box(body) is None
    p = ProvenanceReader().read(io.BytesIO(files["plain"].read_bytes()))
    assert (p.present, p.state, p.problems) == (False, "absent", [])
    for junk in (b"", b"\x00" * 7, b"not a video at all" * 10, b"\x1aE\xdf\xa3webm-ish"):
        assert ProvenanceReader().read(io.BytesIO(junk)).state == "absent"


def test_a_generator_signed_upload_declares_ai_and_is_untrusted_without_anchors(
    files: dict[str, Path],
) -> None:
    p = ProvenanceReader().read(io.BytesIO(files["ai"].read_bytes()))
    assert p.present
    assert p.state == "untrusted"
    assert "signingCredential.untrusted" in p.problems
    assert p.declares_generated
    assert not p.declares_captured
    assert p.digital_source_type == GENERATED
    assert p.claim_generator == "test-generator 1.0"
    assert p.signer is not None
    assert "Test Video Generator" in p.signer


def test_trust_anchors_make_the_same_signer_trusted(files: dict[str, Path]) -> None:
    reader = ProvenanceReader.from_paths(4 << 20, files["anchors"])
    p = reader.read(io.BytesIO(files["ai"].read_bytes()))
    assert (p.state, p.problems) == ("trusted", [])


def test_camera_capture_is_declared_captured(files: dict[str, Path]) -> None:
    p = ProvenanceReader().read(io.BytesIO(files["camera"].read_bytes()))
    assert (p.state, p.declares_captured, p.declares_generated) == ("untrusted", True, False)


def test_tampered_after_signing_is_invalid_with_the_reason(files: dict[str, Path]) -> None:
    p = ProvenanceReader().read(io.BytesIO(files["tampered"].read_bytes()))
    assert p.state == "invalid"
    assert "assertion.bmffHash.mismatch" in p.problems


def test_garbage_in_the_manifest_is_invalid_not_a_crash(files: dict[str, Path]) -> None:
    p = ProvenanceReader().read(io.BytesIO(files["garbage"].read_bytes()))
    assert p.present
    assert p.state == "invalid"
    assert p.problems[0].startswith("unreadable:")


def test_a_manifest_over_the_limit_is_not_parsed(files: dict[str, Path]) -> None:
    reader = ProvenanceReader(ProvenanceConfig(max_manifest_bytes=512))
    p = reader.read(io.BytesIO(files["ai"].read_bytes()))
    assert p.state == "invalid"
    assert p.problems[0].startswith("manifest_too_large")


# -- on the analysis path --------------------------------------------------------------------


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as eng:
        yield eng


@pytest.fixture
def analysis(files: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path) -> Iterator[Analysis]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(
        local_roots=[str(files["plain"].parent)],
        engine="fake",
        worker_id="unit",
        decode_concurrency=2,
        policy_file=policy,
    )
    a = build_analysis(settings, fake_engine)
    yield a
    a.close()


def verdict_of(analysis: Analysis, path: Path, event_id: str, **metadata: str):  # type: ignore[no-untyped-def]
    event = IngestEvent(event_id=event_id, video_id=event_id, uri=path.as_uri(), metadata=metadata)
    outcome = analysis.start(Job(event, FileInput(path))).result(timeout=30)
    assert outcome.verdict is not None, outcome.error
    return outcome.verdict


def test_a_skip_rule_blocks_declared_ai_without_decoding_or_the_engine(
    analysis: Analysis, fake_engine: FakeEngine, files: dict[str, Path]
) -> None:
    v = verdict_of(analysis, files["ai"], "declared")
    assert v.status == "skipped"
    assert v.label is None
    assert v.video is None
    assert v.decision is not None
    assert (v.decision.action, v.decision.rule, v.decision.skipped_model) == (
        "block",
        "declared-ai",
        True,
    )
    assert v.provenance is not None
    assert v.provenance.declares_generated
    assert v.timings_ms.decode is None
    assert fake_engine.submitted == []
    assert analysis.metrics.model_skipped._value.get() == 1


def test_a_tampered_manifest_is_invalid_and_the_model_still_runs(
    analysis: Analysis, fake_engine: FakeEngine, files: dict[str, Path]
) -> None:
    v = verdict_of(analysis, files["tampered"], "tampered")
    assert v.status == "ok"
    assert v.provenance is not None
    assert v.provenance.state == "invalid"
    assert v.decision is not None
    assert (v.decision.action, v.decision.rule) == ("review", "broken-credentials")
    assert fake_engine.submitted == ["tampered"]
    assert v.video is not None
    assert v.video.frames_sampled == 16


def test_the_same_upload_under_two_tenants_gets_two_actions(
    analysis: Analysis, files: dict[str, Path]
) -> None:
    lenient = verdict_of(analysis, files["plain"], "t1", tenant="lenient")
    strict = verdict_of(analysis, files["plain"], "t2", tenant="strict")
    unknown = verdict_of(analysis, files["plain"], "t3", tenant="nobody")
    assert lenient.decision is not None
    assert strict.decision is not None
    assert unknown.decision is not None
    assert (lenient.decision.action, lenient.decision.policy_id) == ("allow", "lenient")
    assert (strict.decision.action, strict.decision.policy_id) == ("block", "strict")
    assert (unknown.decision.policy_id, unknown.decision.inputs.tenant) == ("platform", "nobody")
    assert lenient.provenance is not None
    assert lenient.provenance.state == "absent"


def test_an_upload_stream_is_read_for_provenance_too(
    analysis: Analysis, fake_engine: FakeEngine, files: dict[str, Path]
) -> None:
    data = files["ai"].read_bytes()
    event = IngestEvent(event_id="up", video_id="up", uri="upload:ai.mp4")
    out = analysis.start(Job(event, StreamInput(io.BytesIO(data), len(data)))).result(30)
    assert out.verdict is not None
    assert out.verdict.status == "skipped"
    assert fake_engine.submitted == []
