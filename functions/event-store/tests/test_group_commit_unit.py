"""Group commit, pure logic: rows of concurrent submitters share writes, and each submitter gets
the outcome of its own row (a result, its own error, or the error that failed its whole batch)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ripple_consumer.group_commit import GroupCommit


class Recorder:
    """A write that blocks until released, so that submitters pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()

    def write(self, key: str, rows: list[int]) -> list[object]:
        self.release.wait(10)
        self.batches.append(list(rows))
        return [ValueError(f"row {row} is bad") if row < 0 else (key, row * 10) for row in rows]


async def gather(commit: GroupCommit, submissions: list[tuple[str, int]]) -> list[object]:
    submitted = (commit.submit(key, row) for key, row in submissions)
    return await asyncio.gather(*submitted, return_exceptions=True)


def test_every_submitter_gets_the_outcome_of_its_own_row_and_writes_are_shared():
    recorder = Recorder()
    commit = GroupCommit(recorder.write, max_rows=50, max_flushes=1)
    rows = [*range(1, 40), -7]

    async def scenario() -> list[object]:
        pending = asyncio.ensure_future(gather(commit, [("db", row) for row in rows]))
        await asyncio.sleep(0.05)  # every submitter queued behind the first write
        recorder.release.set()
        return await pending

    outcomes = asyncio.run(scenario())
    for row, outcome in zip(rows, outcomes, strict=True):
        if row < 0:
            assert isinstance(outcome, ValueError) and "row -7" in str(outcome)
        else:
            assert outcome == ("db", row * 10)
    written = [row for batch in recorder.batches for row in batch]
    assert sorted(written) == sorted(rows)  # each row written exactly once
    assert len(recorder.batches) < len(rows)  # and rows shared writes


def test_rows_of_different_keys_never_share_a_write():
    seen: list[tuple[str, list[int]]] = []

    def write(key: str, rows: list[int]) -> list[object]:
        seen.append((key, list(rows)))
        return [(key, row * 10) for row in rows]

    commit = GroupCommit(write, max_rows=10, max_flushes=2)
    results = asyncio.run(gather(commit, [(f"db{n % 2}", n) for n in range(1, 33)]))
    assert results == [(f"db{n % 2}", n * 10) for n in range(1, 33)]
    for key, rows in seen:
        assert {f"db{row % 2}" for row in rows} == {key}
        assert len(rows) <= 10


@pytest.mark.parametrize("max_flushes", [1, 2, 4])
def test_at_most_max_flushes_writes_run_at_once_and_none_is_left_behind(max_flushes):
    running, peak = 0, 0
    lock = threading.Lock()

    def write(key: str, rows: list[int]) -> list[object]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.002)
        with lock:
            running -= 1
        return list(rows)

    commit = GroupCommit(write, max_rows=3, max_flushes=max_flushes)

    async def waves() -> list[object]:
        results: list[object] = []
        for wave in range(5):  # later waves arrive while or after earlier writers finish
            results += await gather(commit, [("db", wave * 100 + n) for n in range(20)])
        return results

    results = asyncio.run(waves())
    assert results == [wave * 100 + n for wave in range(5) for n in range(20)]
    assert peak <= max_flushes


def test_a_failed_write_fails_the_requests_of_its_batch_and_the_next_ones_go_on():
    calls = []

    def write(key: str, rows: list[int]) -> list[object]:
        calls.append(list(rows))
        if len(calls) == 1:
            raise ConnectionError("database down")
        return list(rows)

    commit = GroupCommit(write)

    async def scenario() -> object:
        with pytest.raises(ConnectionError):
            await commit.submit("db", 1)
        return await commit.submit("db", 2)

    assert asyncio.run(scenario()) == 2
