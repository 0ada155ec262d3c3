"""The review console on the real stack: Tansu, moto (S3), a real Label Studio server on
loopback (its own venv, SQLite), `skyra-stream review-console` and `skyra-stream reviews` as
child processes configured only by SKYRA_* variables, and Debian's Chromium for the page.

The console reaches Label Studio through a fault proxy (503s, a held answer), so Label Studio
down and a SIGKILL between creating a task and committing its offset are real events. Verdicts
are published to the review topic by the worker's own publisher, with their tickets; reviewers
annotate through Label Studio's API with their own tokens, as the page does.

`make test-review` runs this module (Label Studio and Chromium are set up by the Makefile).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from skyra_stream.decisions.review_tasks import BOXES, CHOICE, SPANS
from skyra_stream.decisions.review_tickets import ReviewTickets
from skyra_stream.decisions.training_export import export_audit_file
from skyra_stream.delivery.label_studio import LabelStudio, LabelStudioConfig
from skyra_stream.devstack.broker import TansuBroker, free_port, read_all
from skyra_stream.devstack.faulty_proxy import Fault, FaultyProxy
from skyra_stream.devstack.label_studio import LabelStudioServer, Reviewer
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.media.fetch import FetchConfig, ObjectFetcher
from skyra_stream.media.links import expires_at
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import Source, Verdict, VideoInfo
from skyra_stream.producers.kafka_config import KafkaConfig
from skyra_stream.producers.outcomes import OutcomePublisher
from skyra_stream.runtime.wiring import build_review_console
from skyra_stream.settings import Settings
from tests.test_reviews import FAKE_ANSWER, verdict

pytestmark = pytest.mark.review

BUCKET = "review-uploads"
TICKET_KEY = "r" * 40
WEBHOOK_SECRET = "w" * 40
TOPICS = {
    "review": "rc.review",
    "review_results_topic": "rc.review-results",
    "audit_topic": "rc.audit",
    "dead_letter_topic": "rc.dead",
    "verdict_topic": "rc.verdicts",
}
SCREENSHOT = os.environ.get("SKYRA_REVIEW_SCREENSHOT")  # where to copy the page's screenshot


REAL = {"from_name": CHOICE, "to_name": "video", "type": "choices", "value": {"choices": ["Real"]}}


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out: {what}")


@dataclass
class Stack:
    broker: TansuBroker
    studio: LabelStudioServer
    proxy: FaultyProxy
    s3_endpoint: str
    logs: Path
    settings: dict[str, object]
    console: ChildProcess
    reviews: ChildProcess
    publisher: OutcomePublisher
    api: LabelStudio  # straight to Label Studio, as an admin (not through the proxy)
    children: list[ChildProcess]  # [the current console, the review loop]: ended at teardown
    project_id: int = 0

    def start_console(self) -> ChildProcess:
        # The fixture's teardown ends this one too: it once ended only the first console, and
        # a restarted one outlived `make test-review`.
        self.console = self.children[0] = ChildProcess(
            "review-console",
            self.logs / f"console-{uuid.uuid4().hex[:6]}.log",
            self.settings,
            http_port=self.console.http_port,
        )
        self.console.wait_ready(120)
        return self.console

    def publish(self, v: Verdict) -> None:
        self.publisher.publish(v).result(timeout=30)

    def task_ids(self, event_id: str) -> list[int]:
        tasks = self.api.tasks(
            self.project_id,
            [
                {
                    "filter": "filter:tasks:data.event_id",
                    "operator": "equal",
                    "type": "String",
                    "value": event_id,
                }
            ],
        )
        return [int(t["id"]) for t in tasks]

    def one_task(self, event_id: str) -> dict[str, Any]:
        [task_id] = wait_for(lambda: self.task_ids(event_id), 60, f"the task of {event_id}")
        return self.api.task(task_id)

    def records(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for _, v, _ in read_all(self.broker.bootstrap, topic, idle_s=1)]

    def annotate(self, reviewer: Reviewer, task_id: int, result: list[dict[str, Any]]) -> int:
        answer = httpx.post(
            f"{self.studio.url}/api/tasks/{task_id}/annotations",
            json={"result": result, "lead_time": 12.5},
            headers={"Authorization": f"Token {reviewer.token}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])


VIDEO_INFO: list[VideoInfo] = []  # the upload as the worker samples it (set by `stack`)


def review_verdict(event_id: str, p_fake: float, raw: str = FAKE_ANSWER) -> Verdict:
    return verdict("fake", raw).model_copy(
        update={
            "event_id": event_id,
            "video_id": f"vid-{event_id}",
            "fake_probability": p_fake,
            "source": Source(uri=f"s3://{BUCKET}/v.mp4"),
            "video": VIDEO_INFO[0],
        }
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("review-console")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(write_video(logs / "v.mp4", VideoSpec(frames=60))), BUCKET, "v.mp4")
    with (logs / "v.mp4").open("rb") as upload:
        VIDEO_INFO[:] = [sample_video(upload, DecodeLimits()).info]
    broker = TansuBroker(logs / "tansu.log")
    broker.create_topics([*TOPICS.values()], 2)
    studio = LabelStudioServer(logs / "label-studio", logs / "label-studio.log").start()
    proxy = FaultyProxy("127.0.0.1", studio.port).start()
    port = free_port()
    settings: dict[str, object] = {
        "kafka_bootstrap_servers": broker.bootstrap,
        "kafka_session_timeout_ms": 10000,
        "review_console_topic": TOPICS["review"],
        "review_results_topic": TOPICS["review_results_topic"],
        "audit_topic": TOPICS["audit_topic"],
        "dead_letter_topic": TOPICS["dead_letter_topic"],
        "verdict_topic": TOPICS["verdict_topic"],
        "label_studio_url": proxy.url,
        "label_studio_token": studio.token,
        "review_console_webhook_url": f"http://127.0.0.1:{port}/v1/label-studio/webhook",
        "review_console_webhook_secret": WEBHOOK_SECRET,
        # Long: a review that arrives must have come by the webhook, or by the poll on start.
        "review_console_poll_s": 3600,
        "review_console_video_ttl_s": 3600,
        "s3_endpoint_url": moto_server,
        "s3_allowed_buckets": BUCKET,
        "http_host": "127.0.0.1",
        "log_format": "json",
    }
    publisher = OutcomePublisher(
        KafkaConfig(
            kafka_bootstrap_servers=(broker.bootstrap,),
            verdict_topic=TOPICS["verdict_topic"],
            review_topic=TOPICS["review"],
        ),
        tickets=ReviewTickets(TICKET_KEY.encode()),
    )
    # Only the review loop holds the ticket key; the console passes tickets through.
    reviews = ChildProcess(
        "reviews", logs / "reviews.log", {**settings, "review_ticket_key": TICKET_KEY}
    )
    console = ChildProcess("review-console", logs / "console.log", settings, http_port=port)
    children = [console, reviews]
    api = LabelStudio(LabelStudioConfig(url=studio.url, token=studio.token))
    try:
        console.wait_ready(120)
        result = Stack(
            broker,
            studio,
            proxy,
            moto_server,
            logs,
            settings,
            console,
            reviews,
            publisher,
            api,
            children,
        )
        result.project_id = int(next(p["id"] for p in api._call("GET", "/api/projects")["results"]))
        yield result
    finally:
        for child in children:
            child.kill()
        publisher.close()
        api.close()
        proxy.stop()
        studio.stop()
        broker.stop()


def metric(child: ChildProcess, name: str, result: str) -> float:
    return child.metric(f'{name}_total{{result="{result}"}}') or 0.0


def test_a_review_verdict_becomes_one_task_with_the_models_answer_preloaded(stack: Stack) -> None:
    stack.publish(review_verdict("ev-mild", 0.62))
    stack.publish(review_verdict("ev-sure", 0.97))
    stack.publish(review_verdict("ev-mid", 0.81))
    task = stack.one_task("ev-sure")
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "skyra-rl@r1"
    assert prediction["score"] == pytest.approx(0.97)
    by_name = {r["from_name"]: r for r in prediction["result"]}
    assert by_name[SPANS]["value"]["timelinelabels"] == ["Texture Jittering"]
    assert by_name[SPANS]["value"]["ranges"] == [{"start": 4, "end": 16}]
    assert by_name[BOXES]["value"]["sequence"][0]["x"] == pytest.approx(10.0)
    assert by_name[CHOICE]["value"] == {"choices": ["Fake"]}
    # The ticket rides untouched; the video is a presigned link to the upload itself.
    [record] = [
        h
        for _, v, h in read_all(stack.broker.bootstrap, TOPICS["review"], idle_s=1)
        if json.loads(v)["event_id"] == "ev-sure"
    ][:1]
    assert task["data"]["ticket"] == record["review-ticket"].decode()
    with urllib.request.urlopen(task["data"]["video"], timeout=10) as video:
        assert video.read() == (stack.logs / "v.mp4").read_bytes()
    assert "X-Amz-Expires=3600" in task["data"]["video"]
    # Reviewers' tab: most suspicious first.
    for event in ("ev-mild", "ev-mid"):
        stack.one_task(event)
    view = next(
        v for v in stack.api._call("GET", "/api/dm/views", params={"project": stack.project_id})
    )
    ordered = stack.api._call(
        "GET", "/api/tasks", params={"project": stack.project_id, "view": view["id"]}
    )["tasks"]
    mine = [t["data"]["event_id"] for t in ordered if t["data"]["event_id"].startswith("ev-m")]
    probabilities = [t["data"]["fake_probability"] for t in ordered]
    assert probabilities == sorted(probabilities, reverse=True)
    assert mine == ["ev-mid", "ev-mild"]
    # A redelivered verdict finds its task and makes none.
    stack.publish(review_verdict("ev-sure", 0.97))
    wait_for(
        lambda: metric(stack.console, "skyra_review_console_tasks", "existing") >= 1,
        60,
        "the redelivered verdict read",
    )
    assert len(stack.task_ids("ev-sure")) == 1


def audit_of(stack: Stack, event_id: str) -> list[dict[str, Any]]:
    return [a for a in stack.records(TOPICS["audit_topic"]) if a["verdict_event_id"] == event_id]


def test_an_overturn_and_a_corrected_confirm_reach_the_audit_and_the_training_export(
    stack: Stack, tmp_path: Path
) -> None:
    stack.publish(review_verdict("ev-overturn", 0.71))
    stack.publish(review_verdict("ev-confirm", 0.88))
    overturn_task = stack.one_task("ev-overturn")
    confirm_task = stack.one_task("ev-confirm")
    alice = stack.studio.add_reviewer("alice@skyra.test")
    bob = stack.studio.add_reviewer("bob@skyra.test")

    stack.annotate(alice, overturn_task["id"], [REAL])
    result = json.loads(json.dumps(confirm_task["predictions"][0]["result"]))
    for region in result:
        if region["from_name"] == SPANS:
            region["value"]["ranges"] = [{"start": 7, "end": 13}]  # 0.20-0.40 s, was 0.10-0.50
        if region["from_name"] == BOXES:
            for key in region["value"]["sequence"]:
                key["x"] += 20  # the box moved right by a fifth of the frame
    stack.annotate(bob, confirm_task["id"], result)

    overturn = wait_for(lambda: audit_of(stack, "ev-overturn"), 60, "the overturn's audit")[0]
    confirm = wait_for(lambda: audit_of(stack, "ev-confirm"), 60, "the confirm's audit")[0]
    assert (overturn["label"], overturn["model_label"]) == ("real", "fake")
    assert overturn["review"]["outcome"] == "overturn"
    assert overturn["review"]["reviewer"] == "alice@skyra.test"
    assert confirm["review"]["outcome"] == "confirm"
    assert confirm["review"]["reviewer"] == "bob@skyra.test"
    [artifact] = confirm["review"]["artifacts"]
    assert (artifact["type"], artifact["start_s"], artifact["end_s"]) == (
        "Texture Jittering",
        0.2,
        0.4,
    )
    assert artifact["bbox"] == pytest.approx([0.3, 0.2, 0.7, 0.6])
    # Same events on review-results, passed through the review loop's ticket check.
    review_ids = {r["review_id"] for r in stack.records(TOPICS["review_results_topic"])}
    assert {overturn["review_id"], confirm["review_id"]} <= review_ids

    audit_file = tmp_path / "audit.jsonl"
    audit_file.write_text(
        "\n".join(json.dumps(a) for a in [overturn, confirm]) + "\n", encoding="utf-8"
    )
    fetcher = ObjectFetcher(
        FetchConfig(s3_allowed_buckets=(BUCKET,), s3_endpoint_url=stack.s3_endpoint)
    )
    _, problems = export_audit_file(audit_file, tmp_path / "sft", fetcher, DecodeLimits())
    assert problems == []
    exported = (tmp_path / "sft" / "reviews.jsonl").read_text(encoding="utf-8")
    assert len(exported.splitlines()) == 2
    assert "<answer>Real</answer>" in exported
    corrected = (
        "<type>Texture Jittering</type> in <t>[0.20, 0.40]</t> at "
        "<bbox>[0.300, 0.200, 0.700, 0.600]</bbox>"
    )
    assert corrected in exported


def test_an_annotation_that_cannot_be_a_review_is_dead_lettered_and_said_on_the_task(
    stack: Stack,
) -> None:
    stack.publish(review_verdict("ev-bad", 0.77))
    task = stack.one_task("ev-bad")
    carol = stack.studio.add_reviewer("carol@skyra.test")
    stack.annotate(
        carol,
        task["id"],
        [
            {
                "from_name": CHOICE,
                "to_name": "video",
                "type": "choices",
                "value": {"choices": ["Fake"]},
            }
        ],
    )

    def letter() -> list[dict[str, Any]]:
        return [
            d
            for d in stack.records(TOPICS["dead_letter_topic"])
            if d.get("video_id") == "vid-ev-bad"
        ]

    [dead] = wait_for(letter, 60, "the dead letter")
    assert dead["reason"]["code"] == "invalid_review"
    assert "Fake needs at least one artifact" in dead["reason"]["message"]
    problem = wait_for(lambda: stack.api.task(task["id"])["data"].get("problem"), 30, "the reason")
    assert "Fake needs at least one artifact" in problem
    assert audit_of(stack, "ev-bad") == []


def test_a_verdict_edited_in_label_studio_fails_its_ticket_at_the_review_loop(
    stack: Stack,
) -> None:
    stack.publish(review_verdict("ev-edited", 0.74))
    task = stack.one_task("ev-edited")
    data = dict(task["data"])
    edited = json.loads(data["verdict"])
    edited["video_id"] = "someone-elses-video"  # an admin rewrites what is judged
    data["verdict"] = json.dumps(edited)
    stack.api.set_task_data(task["id"], data)
    frank = stack.studio.add_reviewer("frank@skyra.test")
    stack.annotate(frank, task["id"], [REAL])

    def refused() -> list[dict[str, Any]]:
        return [
            d
            for d in stack.records(TOPICS["dead_letter_topic"])
            if "someone-elses-video" in d["raw"] and d["reason"]["code"] == "invalid_review"
        ]

    [dead] = wait_for(refused, 60, "the review loop's refusal")
    assert "ticket does not verify" in dead["reason"]["message"]
    assert audit_of(stack, "ev-edited") == []


def test_queued_tasks_get_a_fresh_video_link_before_theirs_lapses(stack: Stack) -> None:
    upload = (stack.logs / "v.mp4").read_bytes()
    stack.publish(review_verdict("ev-queued", 0.66))
    stack.publish(review_verdict("ev-swapped", 0.67))
    queued = stack.one_task("ev-queued")
    swapped = stack.one_task("ev-swapped")
    reviewed = stack.one_task("ev-bad")  # annotated by an earlier test: out of the queue
    # An admin points a queued task's video somewhere else.
    stack.api.set_task_data(
        swapped["id"], {**swapped["data"], "video": "https://elsewhere.example/v.mp4"}
    )
    # A second console, wired from the same settings as the child, straight to Label Studio;
    # the clock it judges lapses by is moved, the links it signs are real.
    console = build_review_console(
        Settings(**{**stack.settings, "label_studio_url": stack.studio.url})  # type: ignore[arg-type]
    )
    try:
        console.setup()
        # Fresh links (an hour, re-signed with half left) stay; the foreign one is replaced.
        assert console.refresh_links() == 1
        restored = stack.api.task(swapped["id"])["data"]["video"]
        assert restored.startswith(f"{stack.s3_endpoint}/{BUCKET}/v.mp4?")
        # An hour on, every link in the queue has lapsed: each is signed anew.
        later = datetime.now(UTC) + timedelta(hours=1)
        assert console.refresh_links(now=later) >= 3
        first_lapse = expires_at(queued["data"]["video"])
        assert first_lapse is not None
        for task in (queued, swapped):
            link = stack.api.task(task["id"])["data"]["video"]
            lapses = expires_at(link)
            assert lapses is not None  # a presigned link of ours, not the admin's
            assert lapses >= first_lapse
            with urllib.request.urlopen(link, timeout=10) as video:
                assert video.read() == upload
        assert stack.api.task(reviewed["id"])["data"]["video"] == reviewed["data"]["video"]
        assert console.metrics.review_links.labels("refreshed")._value.get() >= 4
    finally:
        console.publisher.close()
        console.studio.close()


def test_the_webhook_refuses_a_caller_without_the_secret(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.console.http_port}/v1/label-studio/webhook"
    body = {"action": "ANNOTATION_CREATED", "task": {"id": 1}, "annotation": {"id": 1, "task": 1}}
    for headers in ({}, {"Authorization": "Bearer " + "x" * 40}):
        answer = httpx.post(url, json=body, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthorized"


def test_label_studio_down_then_a_kill_between_task_and_commit_leaves_one_task_per_verdict(
    stack: Stack,
) -> None:
    # Down: every call answers 503 for a while; the task appears once it is back.
    stack.proxy.inject(6, Fault(status=503))
    stack.publish(review_verdict("ev-down", 0.9))
    stack.one_task("ev-down")
    assert stack.proxy.pending == 0
    assert (stack.console.metric("skyra_review_console_retries_total") or 0) >= 1

    # The import reaches Label Studio, its answer is held: SIGKILL before the commit.
    stack.proxy.inject(1, Fault(status=0, hold_s=60, path_contains="/import"))
    stack.publish(review_verdict("ev-killed", 0.93))
    task = stack.one_task("ev-killed")
    stack.console.kill()
    stack.proxy.drop_faults()
    # While the console is down a reviewer overturns it: the catch-up poll on start finds it.
    dave = stack.studio.add_reviewer("dave@skyra.test")
    stack.annotate(dave, task["id"], [REAL])
    stack.start_console()
    wait_for(
        lambda: metric(stack.console, "skyra_review_console_tasks", "existing") >= 1,
        60,
        "the uncommitted verdict read again",
    )
    assert len(stack.task_ids("ev-killed")) == 1
    assert len(stack.task_ids("ev-down")) == 1
    [audit] = wait_for(lambda: audit_of(stack, "ev-killed"), 60, "the review made while down")
    assert audit["review"]["reviewer"] == "dave@skyra.test"


def test_a_reviewer_sees_the_video_the_regions_and_the_verdict_in_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed (make test-review installs it)")
    from playwright.sync_api import sync_playwright

    stack.publish(review_verdict("ev-page", 0.91))
    task = stack.one_task("ev-page")
    erin = stack.studio.add_reviewer("erin@skyra.test")
    shot = tmp_path / "review-console.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{stack.studio.url}/user/login/")
        page.fill("input[name=email]", erin.email)
        page.fill("input[name=password]", erin.password)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("networkidle")
        assert "/user/login" not in page.url  # logged in as the reviewer
        page.goto(f"{stack.studio.url}/projects/{stack.project_id}/data?task={task['id']}")
        page.get_by_text("Texture Jittering").first.wait_for(timeout=90_000)
        # The presigned link plays in the browser: the first frame is decoded.
        page.wait_for_function(
            "() => { const v = document.querySelector('video'); return v && v.readyState >= 2 }",
            timeout=60_000,
        )
        # For the picture: the box selected in the regions list (its details on the right).
        page.locator("[class*=outliner] >> text=Texture Jittering").last.click()
        page.get_by_text("a0-box").wait_for(timeout=30_000)
        # Selecting it seeks the video to the box's first frame: wait for that frame.
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && !v.seeking && v.readyState >= 2 }",
            timeout=60_000,
        )
        text = page.inner_text("body")
        # The Fake/Real choice is on the first screen, without scrolling.
        choices = [
            page.locator("label", has_text=choice).first.bounding_box(timeout=5000)
            for choice in ("Fake", "Real")
        ]
        page.screenshot(path=str(shot))
        browser.close()
    assert "Texture Jittering" in text  # the lane and the region
    assert "a0-box" in text  # the pre-loaded box, selected
    assert "FAKE · P(fake) 0.91" in text  # the verdict line
    assert "Fake" in text  # the choice
    assert "Real" in text
    for box in choices:
        assert box is not None
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= 900  # the viewport's height
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)
