"""Review tasks: a verdict as a Label Studio task, and a reviewer's annotation as a review event.

    review topic ─► `task_for` (data + the model's prediction) ─► Label Studio ─► reviewer
        ─► annotation ─► `review_from_annotation` ─► ReviewEvent ─► review-results topic

Pure functions, no HTTP: the bridge (`consumers/review_console.py`) moves the bytes. Kept here
because both directions must agree on one layout:

- The labelling configuration is generated from the taxonomy (`labelling_config`): the video,
  one timeline lane per L3 type (`TimelineLabels`, where a span says *when*), boxes on the
  frames labelled with the same types (`VideoRectangle`, *where*), the Real/Fake choice and the
  explanation as text. A new L3 type in the taxonomy is a new lane; nothing is hand-edited.
  The choice sits under the verdict line, above the video: below the timeline's two sets of
  26 labels it would be off the first screen.
- Each artifact of the verdict is pre-loaded as a span and, when it has one, a box, whose
  region ids share a stem (`a3-span`, `a3-box`), so a reviewer's edit of either still names
  the same artifact when it comes back. Label Studio counts frames from 1 at the task's
  frame rate; the verdict's clock is seconds from 0 and its boxes are in 0..1 of the displayed
  frame, Label Studio's in percent. `frame_of` and `seconds_of` are the two conversions.
- The task carries the verdict exactly as the review topic did and its review ticket
  untouched (`data.verdict`, `data.ticket`): the review loop verifies the ticket, so nobody
  with access to Label Studio can make a review of a verdict that was not sent to review.

What an annotation cannot say is an `invalid_review` error with the reason, which the bridge
dead-letters and writes back on the task as a comment.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Final
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skyra_stream.decisions.review_events import final_label
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import short_errors
from skyra_stream.messages import CorrectedArtifact, ReviewEvent, Source, Verdict
from skyra_stream.model.taxonomy import TAXONOMY, classify

VIDEO: Final = "video"
SPANS: Final = "artifact_spans"
BOXES: Final = "artifact_boxes"
BOX_LABELS: Final = "artifact_box_types"
CHOICE: Final = "verdict"
TEXT: Final = "explanation"
FAKE, REAL = "Fake", "Real"
DEFAULT_FPS: Final = 25.0
# One colour per L1 group, so a lane's colour says which half of the taxonomy it is in.
_GROUP_COLOURS: Final = {"Low-Level Forgery": "#e4572e", "Violation of Laws": "#3f88c5"}


class TaskData(BaseModel):
    """What each task carries in Label Studio (`data`): what the page shows, and what the
    annotation needs to become a review event. Read back as untrusted input: anyone with
    admin rights in Label Studio can edit it (an edited verdict fails its ticket later)."""

    model_config = ConfigDict(extra="ignore")

    video: str = Field(description="Presigned link to the upload; empty when it cannot be served.")
    fps: float = Field(gt=0, le=240, description="Label Studio's frame clock for this video.")
    summary: str
    event_id: str
    video_id: str
    fake_probability: float = Field(description="P(fake), the tab's sort key; -1 when none.")
    model_label: str | None
    verdict: str = Field(description="The verdict exactly as the review topic carried it.")
    ticket: str = Field(description="Its `review-ticket` header, untouched.")
    problem: str = Field(default="", description="Why an annotation was not accepted.")


def _invalid(message: str) -> SkyraError:
    return SkyraError(ErrorCode.INVALID_REVIEW, message)


def labelling_config() -> str:
    """The project's labelling configuration (Label Studio XML), from the taxonomy."""
    labels = "\n".join(
        f"      <Label value={quoteattr(l3)} background={quoteattr(_GROUP_COLOURS[l1])}"
        f" hint={quoteattr(f'{l1} > {l2}')}/>"
        for l1, categories in TAXONOMY.items()
        for l2, types in categories.items()
        for l3 in types
    )
    return f"""<View>
  <Header value="$summary"/>
  <View style="color: #b03a2e"><Text name="problem" value="$problem"/></View>
  <Choices name="{CHOICE}" toName="{VIDEO}" choice="single" showInline="true" required="true">
    <Choice value="{FAKE}"/>
    <Choice value="{REAL}"/>
  </Choices>
  <Video name="{VIDEO}" value="$video" framerate="$fps" height="360"/>
  <Labels name="{BOX_LABELS}" toName="{VIDEO}" allowEmpty="false">
{labels}
  </Labels>
  <VideoRectangle name="{BOXES}" toName="{VIDEO}"/>
  <TimelineLabels name="{SPANS}" toName="{VIDEO}">
{labels}
  </TimelineLabels>
  <TextArea name="{TEXT}" toName="{VIDEO}" rows="3" editable="true" maxSubmissions="1"/>
</View>
"""


def fps_of(verdict: Verdict) -> float:
    fps = verdict.video.fps if verdict.video else None
    return fps if fps and math.isfinite(fps) and 1.0 <= fps <= 240.0 else DEFAULT_FPS


def frame_of(seconds: float, fps: float) -> int:
    """Label Studio's frame (from 1) showing the verdict's time `seconds`."""
    return max(1, round(seconds * fps) + 1)


def seconds_of(frame: int, fps: float) -> float:
    return round((frame - 1) / fps, 3)


def model_version(verdict: Verdict) -> str:
    revision = verdict.model.revision
    return f"{verdict.model.name}@{revision}" if revision else verdict.model.name


def summary(verdict: Verdict) -> str:
    p = verdict.fake_probability
    shown = f"{p:.2f}" if p is not None else "n/a"
    label = verdict.label or verdict.status
    return (
        f"{label.upper()} · P(fake) {shown} · {len(verdict.artifacts)} artifact(s) · "
        f"video {verdict.video_id} · event {verdict.event_id}"
    )


def task_for(verdict: Verdict, raw: str, ticket: str | None, video_url: str) -> dict[str, Any]:
    """The task to import: data (what the page shows and what the annotation needs back)
    and the model's answer as a prediction scored with P(fake)."""
    fps = fps_of(verdict)
    duration = verdict.video.duration_s if verdict.video else 0.0
    p_fake = verdict.fake_probability
    data = TaskData(
        video=video_url,
        fps=fps,
        summary=summary(verdict) + ("" if video_url else " · video unavailable (not servable)"),
        event_id=verdict.event_id,
        video_id=verdict.video_id,
        fake_probability=p_fake if p_fake is not None else -1.0,
        model_label=verdict.label,
        verdict=raw,
        ticket=ticket or "",
    ).model_dump()
    prediction = {
        "model_version": model_version(verdict),
        "score": p_fake if p_fake is not None else 0.0,
        "result": prediction_result(verdict, fps, duration),
    }
    return {"data": data, "predictions": [prediction]}


def task_source(data: Any) -> Source | None:
    """The upload a task's video link points at, from the verdict it carries; None when the
    data (untrusted: Label Studio admins can edit it) is not a task of ours."""
    try:
        return Verdict.model_validate_json(TaskData.model_validate(data).verdict).source
    except ValueError:
        return None


def prediction_result(verdict: Verdict, fps: float, duration_s: float) -> list[dict[str, Any]]:
    frames_count = max(1, frame_of(duration_s, fps))
    out: list[dict[str, Any]] = []
    for n, artifact in enumerate(verdict.artifacts):
        known = classify(artifact.type)
        if known is None:  # no lane for it; the explanation still names it
            continue
        start = artifact.start_s if artifact.start_s is not None else 0.0
        end = artifact.end_s if artifact.end_s is not None else duration_s
        first, last = frame_of(start, fps), max(frame_of(start, fps), frame_of(end, fps))
        out.append(
            {
                "id": f"a{n}-span",
                "from_name": SPANS,
                "to_name": VIDEO,
                "type": "timelinelabels",
                "value": {
                    "ranges": [{"start": first, "end": last}],
                    "timelinelabels": [known.type],
                },
            }
        )
        if artifact.bbox is not None:
            x1, y1, x2, y2 = artifact.bbox
            box = {
                "x": x1 * 100,
                "y": y1 * 100,
                "width": (x2 - x1) * 100,
                "height": (y2 - y1) * 100,
                "rotation": 0,
            }
            out.append(
                {
                    "id": f"a{n}-box",
                    "from_name": BOXES,
                    "to_name": VIDEO,
                    "type": "videorectangle",
                    "origin": "prediction",
                    "value": {
                        "framesCount": frames_count,
                        "duration": duration_s,
                        "sequence": [
                            {**box, "frame": first, "enabled": True, "time": (first - 1) / fps},
                            {**box, "frame": last, "enabled": False, "time": (last - 1) / fps},
                        ],
                        "labels": [known.type],
                    },
                }
            )
    label = FAKE if verdict.label == "fake" else REAL if verdict.label == "real" else None
    if label is not None:
        out.append(
            {
                "id": "verdict",
                "from_name": CHOICE,
                "to_name": VIDEO,
                "type": "choices",
                "value": {"choices": [label]},
            }
        )
    if verdict.explanation:
        out.append(
            {
                "id": "explanation",
                "from_name": TEXT,
                "to_name": VIDEO,
                "type": "textarea",
                "value": {"text": [verdict.explanation[:4000]]},
            }
        )
    return out


def review_id(project_id: int, task_id: int, annotation: dict[str, Any]) -> str:
    """One id per saved state of an annotation: a re-read of the same state (webhook and
    catch-up poll, a redelivery) gives the same id, an edit gives a new review."""
    stamp = re.sub(r"[^0-9A-Za-z]", "", str(annotation.get("updated_at") or ""))[:32]
    return f"label-studio:{project_id}:{task_id}:{annotation.get('id')}:{stamp}"


def review_from_annotation(
    task: dict[str, Any], annotation: dict[str, Any], reviewer: str, project_id: int
) -> ReviewEvent:
    """The review event an annotation says, or `invalid_review` with what is wrong."""
    try:
        data = TaskData.model_validate(task.get("data"))
    except ValidationError as exc:
        raise _invalid(
            f"the task carries no verdict (not a task made by the review console): "
            f"{short_errors(exc)}"
        ) from None
    try:
        verdict = Verdict.model_validate_json(data.verdict)
    except ValidationError as exc:
        raise _invalid(f"the task's verdict does not parse: {short_errors(exc)}") from None
    fps = fps_of(verdict)
    results = annotation.get("result")
    if not isinstance(results, list):
        raise _invalid("the annotation has no result list")
    regions = [r for r in results if isinstance(r, dict)]
    choices = [c for r in regions if r.get("from_name") == CHOICE for c in _list(r, "choices")]
    if len(choices) != 1 or choices[0] not in (FAKE, REAL):
        raise _invalid(f"choose exactly one of {FAKE}/{REAL} (got {choices or 'none'})")
    label = "fake" if choices[0] == FAKE else "real"
    # An overturn to real drops the model's regions the page may still show.
    artifacts = _artifacts(regions, fps) if label == "fake" else []
    if label == "fake" and not artifacts:
        raise _invalid(
            "Fake needs at least one artifact: keep or draw a span on the timeline lane of its "
            "type (the contract's Fake answer carries one)"
        )
    texts = [t for r in regions if r.get("from_name") == TEXT for t in _list(r, "text")]
    note = "\n".join(str(t) for t in texts).strip() or None
    if note is not None and note == (verdict.explanation or "").strip():
        note = None  # the model's own explanation, left as it was
    outcome = "confirm" if label == verdict.label else "overturn"
    if outcome == "confirm" and not _changed(artifacts, verdict, fps):
        artifacts = []  # a plain confirm: the model's artifacts stand (review_events)
    try:
        review = ReviewEvent(
            review_id=review_id(project_id, int(task.get("id") or 0), annotation),
            verdict=verdict,
            outcome=outcome,
            reviewer=reviewer,
            label=label,
            artifacts=artifacts,
            note=note[:2000] if note else None,
            reviewed_at=_when(annotation),
            ticket=data.ticket or None,
        )
    except ValidationError as exc:
        raise _invalid(short_errors(exc)) from None
    final_label(review)  # the review loop's own checks, so a bad one is caught here too
    return review


def _list(region: dict[str, Any], key: str) -> list[Any]:
    value = region.get("value")
    items = value.get(key) if isinstance(value, dict) else None
    return items if isinstance(items, list) else []


def _stem(region: dict[str, Any]) -> str:
    return str(region.get("id") or "").rsplit("-", 1)[0]


def _artifacts(regions: list[dict[str, Any]], fps: float) -> list[CorrectedArtifact]:
    """Each span is an artifact; its box is the box region with the same id stem, else an
    unclaimed box of the same type that is on screen within the span. A box without a span
    is an artifact over the frames where its keyframes are enabled."""
    spans = [r for r in regions if r.get("from_name") == SPANS]
    boxes = [r for r in regions if r.get("from_name") == BOXES]
    claimed: set[int] = set()
    out: list[CorrectedArtifact] = []
    for span in spans:
        kind = _one_type(span, "timelinelabels")
        ranges = [x for x in _list(span, "ranges") if isinstance(x, dict)]
        if not ranges:
            raise _invalid(f"span {span.get('id')!r} ({kind}) has no range")
        for rng in ranges:
            first, last = _frame(rng.get("start")), _frame(rng.get("end"))
            match = _matching_box(span, kind, first, last, boxes=boxes, claimed=claimed)
            bbox = _bbox(boxes[match]) if match is not None else None
            out.append(_artifact(kind, seconds_of(first, fps), seconds_of(last, fps), bbox))
    for n, box in enumerate(boxes):
        if n in claimed:
            continue
        kind = _one_type(box, "labels")
        frames = [_frame(k.get("frame")) for k in _keyframes(box)]
        if not frames:
            raise _invalid(f"box {box.get('id')!r} ({kind}) has no keyframe")
        start, end = seconds_of(min(frames), fps), seconds_of(max(frames), fps)
        out.append(_artifact(kind, start, end, _bbox(box)))
    return out


def _artifact(kind: str, start: float, end: float, bbox: Any) -> CorrectedArtifact:
    try:
        return CorrectedArtifact(type=kind, start_s=start, end_s=end, bbox=bbox)
    except ValidationError as exc:
        raise _invalid(f"{kind}: {short_errors(exc)}") from None


def _matching_box(
    span: dict[str, Any],
    kind: str,
    first: int,
    last: int,
    *,
    boxes: list[dict[str, Any]],
    claimed: set[int],
) -> int | None:
    stem = _stem(span)
    for n, box in enumerate(boxes):
        if n not in claimed and stem and _stem(box) == stem:
            claimed.add(n)
            return n
    for n, box in enumerate(boxes):
        if n in claimed or _one_type(box, "labels") != kind:
            continue
        if any(first <= _frame(k.get("frame")) <= last for k in _keyframes(box)):
            claimed.add(n)
            return n
    return None


def _one_type(region: dict[str, Any], key: str) -> str:
    names = _list(region, key)
    if len(names) != 1 or not isinstance(names[0], str):
        raise _invalid(f"region {region.get('id')!r} needs exactly one artifact type, got {names}")
    known = classify(names[0])
    if known is None:
        raise _invalid(f"region {region.get('id')!r}: {names[0]!r} is not an L3 type")
    return known.type


def _frame(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(f"a frame number must be a number, got {value!r}")
    return max(1, int(value))


def _keyframes(box: dict[str, Any]) -> list[dict[str, Any]]:
    return [k for k in _list(box, "sequence") if isinstance(k, dict) and k.get("enabled", True)]


def _bbox(box: dict[str, Any]) -> tuple[float, float, float, float]:
    """Where the artifact is over its span: the union of the box's enabled keyframes, from
    Label Studio's percent to 0..1 of the displayed frame."""
    keys = _keyframes(box)
    if not keys:
        raise _invalid(f"box {box.get('id')!r} has no enabled keyframe")
    try:
        x1 = min(float(k["x"]) for k in keys)
        y1 = min(float(k["y"]) for k in keys)
        x2 = max(float(k["x"]) + float(k["width"]) for k in keys)
        y2 = max(float(k["y"]) + float(k["height"]) for k in keys)
    except (KeyError, TypeError, ValueError):
        raise _invalid(f"box {box.get('id')!r}: a keyframe lacks x, y, width or height") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise _invalid(f"box {box.get('id')!r}: coordinates are not finite")
    return (_unit(x1), _unit(y1), _unit(x2), _unit(y2))


def _unit(percent: float) -> float:
    return round(min(1.0, max(0.0, percent / 100.0)), 4)


def _changed(artifacts: list[CorrectedArtifact], verdict: Verdict, fps: float) -> bool:
    """Whether the reviewer's artifacts differ from what was pre-loaded (after the frame
    round trip, so an untouched prediction is not a correction)."""
    duration = verdict.video.duration_s if verdict.video else 0.0
    preloaded = []
    for a in verdict.artifacts:
        known = classify(a.type)
        if known is None:
            continue
        first = frame_of(a.start_s if a.start_s is not None else 0.0, fps)
        last = max(first, frame_of(a.end_s if a.end_s is not None else duration, fps))
        bbox = tuple(_unit(v * 100) for v in a.bbox) if a.bbox is not None else None
        preloaded.append((known.type, seconds_of(first, fps), seconds_of(last, fps), bbox))
    given = [(a.type, a.start_s, a.end_s, a.bbox) for a in artifacts]
    return sorted(map(repr, given)) != sorted(map(repr, preloaded))


def _when(annotation: dict[str, Any]) -> datetime | None:
    for key in ("updated_at", "created_at"):
        value = annotation.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return None
