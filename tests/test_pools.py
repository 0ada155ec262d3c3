from __future__ import annotations

import asyncio

import pytest

from skyra_stream.pools import PrioritySlots


def test_lower_priority_number_goes_first_and_ties_keep_arrival_order() -> None:
    async def scenario() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []

        async def job(name: str, priority: int) -> None:
            async with slots.slot(priority):
                order.append(name)
                await asyncio.sleep(0.01)

        await slots.acquire()  # hold the only slot while the queue builds up
        tasks = [
            asyncio.create_task(job(n, p))
            for n, p in [
                ("kafka-1", 0),
                ("kafka-2", 0),
                ("api-1", -10),
                ("kafka-3", 0),
                ("api-2", -10),
            ]
        ]
        await asyncio.sleep(0.01)
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["api-1", "api-2", "kafka-1", "kafka-2", "kafka-3"]


def test_never_more_than_size_at_once_and_cancelled_waiters_leave_no_leak() -> None:
    async def scenario() -> tuple[int, int]:
        slots = PrioritySlots(3)
        peak = 0

        async def job(i: int) -> None:
            nonlocal peak
            async with slots.slot(i % 2):
                peak = max(peak, slots.used)
                await asyncio.sleep(0.005)

        tasks = [asyncio.create_task(job(i)) for i in range(30)]
        await asyncio.sleep(0)
        for t in tasks[10:15]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak, slots.used

    peak, used = asyncio.run(scenario())
    assert peak == 3
    assert used == 0


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PrioritySlots(0)
