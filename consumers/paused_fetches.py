"""A work-around for kafka-python 3.0's fetcher, which stops fetching a partition for good
after it was paused and resumed at the wrong moment.

kafka-python 3.0 keeps records that were already fetched for a partition when the partition
is paused (KAFKA-7548, dpkp/kafka-python#2981): parsed records are parked per partition and
should be put back in line once the partition is resumed. A parked partition is also left
out of every fetch request until then. But the fetcher only puts parked records back when
its in-line slot is `None`, and once records have passed through the slot it holds a drained
batch (falsy, yet not `None`) from then on, so the records stay parked and the resumed
partition is never fetched again: no error, no lag metric moving, the partition silent until
the consumer closes. The worker pauses and resumes partitions all the time (a full window,
and the fair share of a hot partition), and this is what the fleet campaign kept finding: a
worker that owned a partition and never read its next records (issue 18). Checked on 3.0.12,
the newest release; the check lives in `tests/test_paused_fetches.py`, against the real
broker, so a kafka-python that fixes (or changes) this is noticed.

The fix empties the slot before each drain when what it holds is drained: everything else in
the fetcher reads the slot by truthiness, so a drained batch and `None` mean the same, and
parked records get back in line the next time their partition is not paused.
"""

from __future__ import annotations

from typing import Any

import structlog
from kafka import KafkaConsumer

log = structlog.get_logger(__name__)


def restore_resumed_partitions(consumer: KafkaConsumer) -> bool:
    """Make `consumer` put the records of resumed partitions back in line. Returns whether
    the fetcher has the parking this fixes (kafka-python 2 has none; a later release may
    change it): otherwise nothing is changed and that is logged once per consumer."""
    fetcher = getattr(consumer, "_fetcher", None)
    drain = getattr(fetcher, "fetched_records", None)
    if (
        fetcher is None
        or drain is None
        or not hasattr(fetcher, "_next_partition_records")
        or not hasattr(fetcher, "_paused_partition_records")
    ):
        log.info("kafka_fetcher_without_parked_records", fix="restore_resumed_partitions")
        return False

    def fetched_records(*args: Any, **kwargs: Any) -> Any:
        current = fetcher._next_partition_records
        if current is not None and not current:
            fetcher._next_partition_records = None
        return drain(*args, **kwargs)

    fetcher.fetched_records = fetched_records
    return True
