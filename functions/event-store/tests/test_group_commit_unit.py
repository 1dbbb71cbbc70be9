"""Group commit, pure logic: rows of concurrent submitters share writes, and each submitter gets
the outcome of its own row (a result, its own error, or the error that failed its whole batch)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ripple_consumer.group_commit import GroupCommit


class Recorder:
    """A write that blocks until released, so that submitters pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def write(self, key: str, rows: list[int]) -> list[object]:
        self.release.wait(10)
        with self.lock:
            self.batches.append(list(rows))
        return [ValueError(f"row {row} is bad") if row < 0 else (key, row * 10) for row in rows]


def test_every_submitter_gets_the_outcome_of_its_own_row_and_writes_are_shared():
    recorder = Recorder()
    commit = GroupCommit(recorder.write, max_rows=50, max_flushes=1)
    rows = [*range(1, 40), -7]
    with ThreadPoolExecutor(len(rows)) as pool:
        futures = {row: pool.submit(commit.submit, "db", row) for row in rows}
        recorder.release.set()
        for row, future in futures.items():
            if row < 0:
                with pytest.raises(ValueError, match="row -7"):
                    future.result(10)
            else:
                assert future.result(10) == ("db", row * 10)
    written = [row for batch in recorder.batches for row in batch]
    assert sorted(written) == sorted(rows)  # each row written exactly once
    assert len(recorder.batches) < len(rows)  # and rows shared writes


def test_rows_of_different_keys_never_share_a_write():
    recorder = Recorder()
    recorder.release.set()
    seen: list[tuple[str, list[int]]] = []

    def write(key: str, rows: list[int]) -> list[object]:
        seen.append((key, list(rows)))
        return recorder.write(key, rows)

    commit = GroupCommit(write, max_rows=10, max_flushes=2)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(commit.submit, f"db{n % 2}", n) for n in range(1, 33)]
        results = [future.result(10) for future in futures]
    assert results == [(f"db{n % 2}", n * 10) for n in range(1, 33)]
    for key, rows in seen:
        assert {f"db{row % 2}" for row in rows} == {key}
        assert len(rows) <= 10


def test_a_failed_write_fails_the_requests_of_its_batch_and_the_next_ones_go_on():
    calls = []

    def write(key: str, rows: list[int]) -> list[object]:
        calls.append(list(rows))
        if len(calls) == 1:
            raise ConnectionError("database down")
        return list(rows)

    commit = GroupCommit(write)
    with pytest.raises(ConnectionError):
        commit.submit("db", 1)
    assert commit.submit("db", 2) == 2
