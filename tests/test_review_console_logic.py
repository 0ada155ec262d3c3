"""The review console's pieces that need no server: the webhook body, the video links, the
configuration it refuses, and `reviews stats` on an audit file (the real round trip is
tests/test_review_console.py)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skyra_stream.api.guards import ApiProblem
from skyra_stream.api.label_studio_hooks import label_studio_router, task_ids
from skyra_stream.cli import app
from skyra_stream.consumers.review_console import Backoff
from skyra_stream.decisions import review_tasks as rt
from skyra_stream.decisions.review_events import audit_record
from skyra_stream.devstack.processes import skyra_command
from skyra_stream.media.fetch import FetchConfig
from skyra_stream.media.links import VideoLinks, expires_at
from skyra_stream.messages import Source
from skyra_stream.runtime.wiring import build_review_console
from skyra_stream.settings import Settings
from tests.test_reviews import FAKE_ANSWER, verdict


def test_a_webhook_body_names_its_tasks_and_nothing_else() -> None:
    one = {"action": "ANNOTATION_CREATED", "task": {"id": 7}, "annotation": {"id": 3, "task": 7}}
    bulk = {"action": "ANNOTATIONS_CREATED", "annotations": [{"task": 9}, {"task": 8}, {}]}
    odd = {"task": {"id": True}, "annotation": {"task": -1}, "annotations": "x"}
    assert task_ids(json.dumps(one).encode()) == [7]
    assert task_ids(json.dumps(bulk).encode()) == [8, 9]
    assert task_ids(json.dumps(odd).encode()) == []
    for bad in (b"[1]", b"{not json"):
        with pytest.raises(ApiProblem):
            task_ids(bad)


def test_a_short_webhook_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        label_studio_router("short", lambda _: None)


def test_links_only_for_allowed_buckets_and_with_a_bounded_lifetime() -> None:
    config = FetchConfig(s3_allowed_buckets=("uploads",), s3_endpoint_url="http://s3.test")
    links = VideoLinks(config, ttl_s=600)
    url = links.url(Source(uri="s3://uploads/a/b.mp4", version_id="v7"))
    assert url is not None
    assert url.startswith("http://s3.test/uploads/a/b.mp4?")
    assert "X-Amz-Expires=600" in url
    assert "versionId=v7" in url
    assert links.url(Source(uri="s3://elsewhere/b.mp4")) is None
    assert links.url(Source(uri="file:///etc/passwd")) is None
    public = VideoLinks(config, ttl_s=600, public_endpoint_url="https://media.example")
    assert (public.url(Source(uri="s3://uploads/b.mp4")) or "").startswith("https://media.example/")
    for ttl in (0, 8 * 24 * 3600):
        with pytest.raises(ValueError, match="presigned URL lives"):
            VideoLinks(config, ttl_s=ttl)


def test_a_link_says_when_it_lapses_and_a_task_which_upload_it_shows() -> None:
    config = FetchConfig(s3_allowed_buckets=("uploads",), s3_endpoint_url="http://s3.test")
    before = datetime.now(UTC).replace(microsecond=0)
    url = VideoLinks(config, ttl_s=600).url(Source(uri="s3://uploads/a.mp4")) or ""
    lapses = expires_at(url)
    assert lapses is not None
    assert before + timedelta(seconds=600) <= lapses <= datetime.now(UTC) + timedelta(seconds=600)
    for foreign in (
        "",
        "https://elsewhere.example/v.mp4",
        "http://s3.test/a?X-Amz-Date=yesterday&X-Amz-Expires=600",
        "http://s3.test/a?X-Amz-Date=20261202T010000Z&X-Amz-Expires=-1",
        "http://s3.test/a?X-Amz-Date=20261202T010000Z&X-Amz-Expires=99999999999",
    ):
        assert expires_at(foreign) is None
    v = verdict("fake", FAKE_ANSWER)
    data = rt.task_for(v, v.model_dump_json(), "ticket", url)["data"]
    assert rt.task_source(data) == v.source
    assert rt.task_source({**data, "verdict": "{not json"}) is None
    assert rt.task_source({"video": url}) is None
    assert rt.task_source("not an object") is None


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.step() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.step() == 0.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "SKYRA_REVIEW_CONSOLE_TOPIC, SKYRA_LABEL_STUDIO_URL, SKYRA_LABEL_STUDIO_TOKEN"),
        (
            {
                "review_console_topic": "r",
                "label_studio_url": "http://ls",
                "label_studio_token": "t",
                "review_console_webhook_url": "http://me/v1/label-studio/webhook",
            },
            "SKYRA_REVIEW_CONSOLE_WEBHOOK_SECRET",
        ),
    ],
)
def test_the_console_names_what_its_configuration_lacks(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_review_console(Settings.model_validate(settings))


@pytest.mark.subprocess
def test_review_console_exits_2_without_label_studio() -> None:
    # A child process: the command configures logging on its own stderr, which typer's
    # in-process runner would close under the next test's loggers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYRA_LABEL_STUDIO")}
    proc = subprocess.run(
        [skyra_command(), "review-console"],
        env={**env, "SKYRA_REVIEW_CONSOLE_TOPIC": "skyra.review"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "SKYRA_LABEL_STUDIO_URL" in proc.stderr


def test_reviews_stats_reads_an_audit_file(tmp_path: Path) -> None:
    v = verdict("fake", FAKE_ANSWER)
    task = rt.task_for(v, v.model_dump_json(), "t", "https://x")
    task = {"id": 4, **task}
    records = []
    for n, (who, choice) in enumerate([("alice", "Fake"), ("bob", "Real"), ("bob", "Real")]):
        result = [{"from_name": rt.CHOICE, "value": {"choices": [choice]}}]
        if choice == "Fake":
            result = task["predictions"][0]["result"]
        review = rt.review_from_annotation(task, {"id": n, "result": result}, who, 1)
        records.append(audit_record(review).model_dump_json())
    audit = tmp_path / "audit.jsonl"
    audit.write_text("\n".join(records) + "\nnot json\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["reviews", "stats", "--audit", str(audit)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["alice"][2:5] == ["1", "0.0%", "100.0%"]
    assert rows["bob"][2:5] == ["2", "100.0%", "0.0%"]
    assert rows["skyra-rl@r1"][2] == "3"
    assert "not an audit record" in result.stderr
