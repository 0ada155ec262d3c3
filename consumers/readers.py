"""Reading topics from the beginning without joining a group: for tools, not the worker.

The demo, the chaos campaign and the tests all need to read what the worker wrote (or
where a partition ends) without taking part in its consumer group or committing anything.
One definition keeps them reading the same way.
"""

from __future__ import annotations

from kafka import KafkaConsumer


def topic_reader(bootstrap: str, *topics: str, idle_s: float | None = None) -> KafkaConsumer:
    """A group-less consumer at the earliest offset that commits nothing. With `idle_s`,
    iterating it stops after that long without a record."""
    extra = {"consumer_timeout_ms": int(idle_s * 1000)} if idle_s is not None else {}
    return KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **extra,
    )
