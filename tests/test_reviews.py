"""The review loop's logic: which review events are refused and why, the audit record's
links, and the SFT export (round trip through the contract's parser, frames re-sampled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skyra_stream.decisions.review_events import audit_record, parse_review
from skyra_stream.decisions.training_export import export_sft, training_answer
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.media.decode import sample_video
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import (
    AuditRecord,
    CorrectedArtifact,
    Decision,
    DecisionInputs,
    ModelInfo,
    ReviewEvent,
    Source,
    Timings,
    Verdict,
    VideoInfo,
    WorkerInfo,
)
from skyra_stream.model.prompt import system_prompt
from skyra_stream.model.response import parse_response

REAL_ANSWER = "<think>A street at dusk, nothing out of place.</think>\n<answer>Real</answer>"
FAKE_ANSWER = (
    "<think>The wall <type>Texture Jittering</type> in <t>[0.10, 0.50]</t> at "
    "<bbox>[0.1, 0.2, 0.5, 0.6]</bbox> shimmers.</think>\n<answer>Fake</answer> trailing"
)


def verdict(
    label: str | None = "real", raw: str = REAL_ANSWER, uri: str = "s3://b/k.mp4"
) -> Verdict:
    parsed = parse_response(raw, duration_s=1.0)
    inputs = DecisionInputs(
        tenant="t",
        status=parsed.status,
        label=parsed.label,
        fake_probability=0.6,
        artifact_types=[],
        categories=[],
        groups=[],
        duration_s=1.0,
        provenance="absent",
        declares_generated=False,
        declares_captured=False,
    )
    return Verdict(
        event_id="ev-1",
        video_id="vid-1",
        source=Source(uri=uri),
        status=parsed.status,
        label=parsed.label if label else None,
        fake_probability=0.6,
        artifacts=parsed.artifacts,
        cleared_regions=[],
        explanation=None,
        raw_response=raw,
        video=VideoInfo(
            duration_s=1.0,
            width=128,
            height=96,
            fps=30.0,
            codec="h264",
            frames_sampled=16,
            timestamps_s=[i / 16 for i in range(16)],
        ),
        model=ModelInfo(name="skyra-rl", revision="r1"),
        timings_ms=Timings(),
        worker=WorkerInfo(id="w", version="0"),
        decision=Decision(
            action="review", policy_id="platform", policy_version="7", rule="maybe", inputs=inputs
        ),
    )


def review(v: Verdict, **kw: Any) -> bytes:
    doc: dict[str, Any] = {
        "review_id": "r-1",
        "verdict": json.loads(v.model_dump_json()),
        "outcome": "overturn",
        "reviewer": "alice",
    }
    doc.update(kw)
    return json.dumps(doc).encode()


JITTER = {"type": "Texture Jittering", "start_s": 0.2, "end_s": 0.6, "bbox": [0.1, 0.1, 0.4, 0.5]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (review(verdict(), outcome="maybe"), "outcome"),
        (review(verdict(), reviewer=""), "reviewer"),
        (review(verdict()), "a fake label needs at least one artifact"),
        (review(verdict(), label="real"), "an overturn must change the label"),
        (review(verdict(), outcome="confirm", label="fake"), "a confirm keeps the label"),
        (
            review(verdict(), artifacts=[{**JITTER, "type": "Wobbly Walls"}]),
            "not an L3 type of the taxonomy",
        ),
        (review(verdict(), artifacts=[{**JITTER, "end_s": 0.1}]), "is before start_s"),
        (review(verdict(), artifacts=[{**JITTER, "end_s": 9.0}]), "past the video's end"),
        (review(verdict(), artifacts=[{**JITTER, "bbox": [0.5, 0.1, 0.4, 0.5]}]), "not a box"),
        (review(verdict(label=None), outcome="confirm"), "cannot confirm a verdict without"),
        (
            review(verdict(FAKE_ANSWER), outcome="overturn", artifacts=[JITTER], label="real"),
            "artifacts given with the label 'real'",
        ),
        (b"x" * 5000, "the limit is 4096"),
    ],
)
def test_a_bad_review_is_refused_with_its_reason(raw: bytes, message: str) -> None:
    with pytest.raises(SkyraError) as err:
        parse_review(raw, max_bytes=4096 if raw.startswith(b"x") else 1 << 20)
    assert err.value.code is ErrorCode.INVALID_REVIEW
    assert message in err.value.message


def test_the_audit_record_links_the_verdict_its_model_and_policy() -> None:
    audit = audit_record(parse_review(review(verdict(), artifacts=[JITTER]), 1 << 20))
    assert (audit.verdict_event_id, audit.video_id) == ("ev-1", "vid-1")
    assert audit.model == ModelInfo(name="skyra-rl", revision="r1")
    assert (audit.policy_id, audit.policy_version, audit.action) == ("platform", "7", "review")
    assert (audit.model_label, audit.label) == ("real", "fake")
    assert AuditRecord.model_validate_json(audit.model_dump_json()) == audit


def test_an_overturn_exports_the_reviewers_artifacts_and_parses_back_to_them() -> None:
    second = {"type": "Abnormal Human Body Structure", "start_s": 0.0, "end_s": 0.3}
    audit = audit_record(parse_review(review(verdict(), artifacts=[JITTER, second]), 1 << 20))
    answer = training_answer(audit)
    parsed = parse_response(answer, duration_s=1.0)
    assert parsed.status == "ok"
    assert parsed.label == "fake"
    got = [(a.type, a.start_s, a.end_s, a.bbox) for a in parsed.artifacts]
    # Temporal order, as the contract's think block lists findings.
    assert got == [
        ("Abnormal Human Body Structure", 0.0, 0.3, None),
        ("Texture Jittering", 0.2, 0.6, pytest.approx((0.1, 0.1, 0.4, 0.5))),
    ]
    assert all(a.in_taxonomy for a in parsed.artifacts)


def test_a_confirm_keeps_the_models_answer_and_an_overturn_to_real_has_none() -> None:
    fake = verdict(raw=FAKE_ANSWER)
    confirmed = audit_record(parse_review(review(fake, outcome="confirm"), 1 << 20))
    assert training_answer(confirmed) == FAKE_ANSWER.removesuffix(" trailing")
    to_real = audit_record(parse_review(review(fake), 1 << 20))
    assert to_real.label == "real"
    parsed = parse_response(training_answer(to_real), duration_s=1.0)
    assert (parsed.label, parsed.artifacts) == ("real", [])


def test_export_sft_writes_records_frames_and_dataset_info(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", VideoSpec(width=128, height=96, frames=30))
    sampled = sample_video(str(clip))
    v = verdict(uri=clip.as_uri()).model_copy(
        update={"video": VideoInfo(**{**sampled.info.model_dump()})}
    )
    good = audit_record(parse_review(review(v, artifacts=[JITTER]), 1 << 20))
    again = good  # a redelivered audit record: exported once
    moved = audit_record(parse_review(review(v, review_id="r-2", artifacts=[JITTER]), 1 << 20))

    def frames_of(record: AuditRecord) -> tuple[list[Any], list[float]]:
        if record.review_id == "r-2":  # the object changed since the review
            return list(sampled.frames), [t + 1 for t in sampled.timestamps_s]
        return list(sampled.frames), sampled.timestamps_s

    out = tmp_path / "sft"
    result = export_sft([good, again, moved], out, frames_of)
    assert result.written == 1
    assert "differ" in result.skipped["r-2"]
    (line,) = (out / "reviews.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["system"] == system_prompt()
    user, assistant = record["messages"]
    assert user["content"].count("<image>") == 16 == len(record["images"])
    assert user["content"].startswith("Here are the video frames")
    assert all((out / p).is_file() for p in record["images"])
    assert parse_response(assistant["content"], duration_s=1.0).label == "fake"
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["skyra_reviews"]["file_name"] == "reviews.jsonl"
    assert info["skyra_reviews"]["formatting"] == "sharegpt"


def test_a_skipped_verdict_is_not_exported(tmp_path: Path) -> None:
    v = verdict().model_copy(update={"video": None, "status": "skipped", "label": None})
    audit = audit_record(
        ReviewEvent(
            review_id="r-s",
            verdict=v,
            outcome="overturn",
            reviewer="bob",
            label="fake",
            artifacts=[CorrectedArtifact(type="Unnatural Blur", start_s=0, end_s=1)],
        )
    )
    result = export_sft([audit], tmp_path, lambda r: ([], []))
    assert result.written == 0
    assert "no frames" in result.skipped["r-s"]


def test_a_ticket_verifies_only_for_the_verdict_it_was_issued_for() -> None:
    from skyra_stream.decisions.review_tickets import ReviewTickets

    tickets = ReviewTickets(b"k" * 40)
    sent = verdict()
    ticket = tickets.issue(sent)
    flipped = "fake" if sent.label == "real" else "real"
    # a copy parsed from the bytes the worker published verifies
    assert tickets.verify(Verdict.model_validate_json(sent.model_dump_json()), ticket)
    assert not tickets.verify(sent.model_copy(update={"label": flipped}), ticket)
    assert not tickets.verify(sent.model_copy(update={"fake_probability": 0.5}), ticket)
    assert not tickets.verify(sent.model_copy(update={"event_id": "another"}), ticket)
    assert not tickets.verify(sent, None)
    assert not tickets.verify(sent, "0" * 64)
    assert not ReviewTickets(b"x" * 40).verify(sent, ticket)
    # a rotation: the new key with the old one as previous still verifies old tickets
    assert ReviewTickets(b"n" * 40, previous=b"k" * 40).verify(sent, ticket)
    assert not ReviewTickets(b"n" * 40).verify(sent, ticket)
