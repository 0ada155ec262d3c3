"""Pausing and resuming partitions as the worker's backpressure does loses no partition: the
kafka-python fetcher bug that `consumers/paused_fetches.py` works around, on the real broker.

Without the fix, kafka-python 3.0.12 stops fetching several of the 8 partitions for good
after 150 turns of pausing and resuming (their parked records are never put back in line);
the second test shows it, so a kafka-python release that fixes the bug or changes the
fetcher is noticed here, not in a stalled fleet."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from skyra_stream.consumers.ingest_loop import make_consumer
from skyra_stream.consumers.paused_fetches import restore_resumed_partitions
from skyra_stream.devstack.broker import TansuBroker
from skyra_stream.producers.admin import create_topics
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings

pytestmark = pytest.mark.stack

PARTITIONS = 8
TURNS = 150
BACKLOG = 40


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path_factory.mktemp("paused-fetches") / "tansu.log")
    yield broker
    broker.stop()


def churn(broker: TansuBroker, topic: str, *, fix: bool, drain_s: float) -> dict[int, list[int]]:
    """A backlog on every partition, read a few records at a time while a random 30 % of
    the partitions are paused each turn (as the worker's window and fair share do); then
    everything resumed and read until the log ends (or `drain_s` pass). Returns the offsets
    read per partition, in the order they came."""
    create_topics(broker.bootstrap, [topic], PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        for partition in range(PARTITIONS):
            for _ in range(BACKLOG):
                producer.send(topic, b"x", partition=partition)
        producer.flush()
    finally:
        producer.close()
    # The worker's own consumer (its config and the fix), or a plain one. Assigned, not
    # subscribed: the fetcher is the same, and there is no group join to wait for.
    consumer = (
        make_consumer(
            kafka_config(
                Settings(
                    kafka_bootstrap_servers=[broker.bootstrap],
                    group_id=f"{topic}-group",
                    kafka_auto_offset_reset="earliest",
                )
            )
        )
        if fix
        else KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
    )
    read: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}

    def take(records: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        for tp, batch in records.items():
            read[tp.partition].extend(r.offset for r in batch)

    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        rng = random.Random(1)
        paused: set[TopicPartition] = set()
        for _ in range(TURNS):
            wanted = {tp for tp in partitions if rng.random() < 0.3}
            if wanted - paused:
                consumer.pause(*(wanted - paused))
            if paused - wanted:
                consumer.resume(*(paused - wanted))
            paused = wanted
            take(consumer.poll(timeout_ms=20, max_records=5))
        consumer.resume(*partitions)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(len(o) < BACKLOG for o in read.values()):
            take(consumer.poll(timeout_ms=200))
    finally:
        consumer.close(autocommit=False)
    return read


def test_the_worker_consumer_reads_every_partition_to_its_end_through_pause_resume_churn(
    broker: TansuBroker,
) -> None:
    read = churn(broker, "churn-fixed", fix=True, drain_s=30)
    for partition, offsets in read.items():
        assert offsets == list(range(BACKLOG)), f"partition {partition}"


def test_without_the_fix_kafka_python_leaves_resumed_partitions_unread(
    broker: TansuBroker,
) -> None:
    # A stalled partition stays stalled: 5 s of nothing is as good as a minute here.
    read = churn(broker, "churn-unfixed", fix=False, drain_s=5)
    stalled = [p for p, offsets in read.items() if len(offsets) < BACKLOG]
    print(f"partitions left short without the fix: {stalled}")
    assert stalled, (
        "kafka-python read every partition without consumers/paused_fetches.py: the fetcher "
        "bug it works around may be fixed; check the fix is still needed"
    )


def test_the_fix_recognises_the_installed_fetcher(broker: TansuBroker) -> None:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert restore_resumed_partitions(consumer)
    finally:
        consumer.close()
