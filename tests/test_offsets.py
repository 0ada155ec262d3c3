from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from skyra_stream.consumers.offsets import PartitionOffsets


def test_out_of_order_completion_commits_only_below_the_oldest_pending() -> None:
    p = PartitionOffsets()
    for o in range(10, 15):
        p.started(o)
    assert p.committable() == 10
    p.finished(12)
    p.finished(13)
    assert p.committable() == 10  # 10 and 11 still running
    p.finished(10)
    assert p.committable() == 11
    p.committed = 11
    assert p.committable() is None  # nothing new
    p.finished(11)
    assert p.committable() == 14
    p.finished(14)
    assert p.committable() == 15


def test_nothing_started_nothing_to_commit() -> None:
    assert PartitionOffsets().committable() is None


@given(st.integers(1, 60), st.randoms(use_true_random=False))
def test_never_commits_past_an_unfinished_offset(n: int, rnd: random.Random) -> None:
    p = PartitionOffsets()
    for o in range(n):
        p.started(o)
    order = list(range(n))
    rnd.shuffle(order)
    done: set[int] = set()
    for o in order:
        p.finished(o)
        done.add(o)
        position = p.committable()
        if position is not None:
            assert all(x in done for x in range(position))
            p.committed = position
    assert p.committed == n
