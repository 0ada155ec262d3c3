"""Training records from the audit trail: reviewed verdicts as SFT data for the next fine-tune.

The training record is the contract's output form, written so that the contract's own parser
reads back exactly the reviewer's artifacts (tests/test_reviews.py checks the round trip).
The frames are sampled again from the verdict's source through the worker's allowlist and
limits, and must have the verdict's timestamps: a record whose object changed since is
skipped and named, never trained on with frames the reviewer did not see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from skyra_stream.decisions.review_events import artifacts_after
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.media.fetch import Fetcher
from skyra_stream.messages import AuditRecord
from skyra_stream.model.prompt import system_prompt, user_content

DATASET_NAME: Final = "skyra_reviews"
_ANSWER_END = re.compile(r"</answer>", re.IGNORECASE)


def training_answer(record: AuditRecord) -> str:
    """The assistant turn in the contract's form. A confirm without corrections keeps the
    model's own reasoning (the richer target); otherwise the answer is written from the
    reviewer's artifacts, in temporal order, with normalised boxes."""
    review, verdict = record.review, record.review.verdict
    if review.outcome == "confirm" and not review.artifacts and verdict.status == "ok":
        end = _ANSWER_END.search(verdict.raw_response)
        if end is not None:
            return verdict.raw_response[: end.end()].strip()
    artifacts = sorted(artifacts_after(review, record.label), key=lambda a: a.start_s)
    if record.label == "real":
        return (
            "<think>A human reviewer checked the video and found no generation artifact."
            "</think>\n<answer>Real</answer>"
        )
    findings = " ".join(
        f"<type>{a.type}</type> in <t>[{a.start_s:.2f}, {a.end_s:.2f}]</t> at "
        f"<bbox>[{', '.join(f'{v:.3f}' for v in (a.bbox or (0.0, 0.0, 0.0, 0.0)))}]</bbox>."
        for a in artifacts
    )
    return (
        f"<think>A human reviewer marked these findings: {findings}</think>\n<answer>Fake</answer>"
    )


def sft_record(record: AuditRecord, images: Sequence[str]) -> dict[str, Any]:
    """One LLaMA-Factory sharegpt record, as `k8s/training/llamafactory-sft.yaml` reads them
    (template qwen2_vl: `<image>` marks where each frame goes in the user turn)."""
    video = record.review.verdict.video
    if video is None:
        raise ValueError("a skipped verdict has no frames to train on")
    user = "".join(
        item["text"] if item["type"] == "text" else "<image>\n"
        for item in user_content(video.timestamps_s)
    )
    return {
        "system": system_prompt(),
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": training_answer(record)},
        ],
        "images": list(images),
        "review_id": record.review_id,
    }


def dataset_info(file_name: str) -> dict[str, Any]:
    return {
        DATASET_NAME: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images", "system": "system"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }
    }


Frames = Sequence[npt.NDArray[np.uint8]]


@dataclass(frozen=True, slots=True)
class ExportResult:
    written: int
    skipped: dict[str, str]  # review id -> why


def export_sft(
    records: Iterable[AuditRecord],
    out: Path,
    frames_of: Callable[[AuditRecord], tuple[Frames, Sequence[float]]],
) -> ExportResult:
    """Write OUT/reviews.jsonl, OUT/dataset_info.json and the frames (OUT/frames/<review>/
    NN.png). `frames_of` gives the 16 frames the model saw (the sampler again, on the
    verdict's source); a record whose frames cannot be had is skipped, with the reason."""
    from PIL import Image  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, {}
    seen: set[str] = set()
    with (out / "reviews.jsonl").open("w", encoding="utf-8") as sink:
        for record in records:
            if record.review_id in seen:  # a redelivered audit record
                continue
            seen.add(record.review_id)
            video = record.review.verdict.video
            if video is None:
                skipped[record.review_id] = "skipped verdict: no frames were decoded"
                continue
            try:
                frames, stamps = frames_of(record)
            except Exception as exc:
                skipped[record.review_id] = f"frames unavailable: {exc}"
                continue
            if len(stamps) != len(video.timestamps_s) or any(
                abs(a - b) > 0.01 for a, b in zip(stamps, video.timestamps_s, strict=False)
            ):
                # The object changed since (a new version under the same key): these are
                # not the frames the reviewer judged.
                skipped[record.review_id] = "the frames sampled now differ from the verdict's"
                continue
            folder = out / "frames" / _safe(record.review_id)
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for i, frame in enumerate(frames):
                path = folder / f"{i:02d}.png"
                Image.fromarray(frame).save(path)
                paths.append(str(path.relative_to(out)))
            sink.write(json.dumps(sft_record(record, paths)) + "\n")
            written += 1
    (out / "dataset_info.json").write_text(json.dumps(dataset_info("reviews.jsonl"), indent=2))
    return ExportResult(written, skipped)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "review"


def read_audit_records(path: Path) -> tuple[list[AuditRecord], list[str]]:
    """The audit records of a JSON-lines file (a dump of the audit topic), and one message
    per line that is not one."""
    records, problems = [], []
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(AuditRecord.model_validate_json(line))
            except ValidationError as exc:
                problems.append(f"{path}:{n}: not an audit record: {exc.errors()[0]['msg']}")
    return records, problems


def export_audit_file(
    audit: Path, out: Path, fetcher: Fetcher, limits: DecodeLimits
) -> tuple[ExportResult, list[str]]:
    """`skyra-stream export-sft`: every audit record of `audit` as a training record, its
    frames sampled from the verdict's source as the worker would sample them."""

    def frames_of(record: AuditRecord) -> tuple[list[Any], list[float]]:
        source = record.review.verdict.source
        with fetcher.fetch(source.uri, version_id=source.version_id) as obj:
            video = sample_video(obj.body, limits)
        return list(video.frames), video.timestamps_s

    records, problems = read_audit_records(audit)
    return export_sft(records, out, frames_of), problems
