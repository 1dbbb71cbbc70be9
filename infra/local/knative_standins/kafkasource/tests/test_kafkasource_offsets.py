"""offsets.py: an offset is committed only once it and every earlier offset of its partition are done."""

from __future__ import annotations

import pytest

from knative_standins.kafkasource.offsets import OffsetTracker, PartitionOffsets


@pytest.mark.parametrize(
    ("label", "received", "completed", "want_commit", "want_outstanding"),
    [
        ("nothing received", [], [], None, 0),
        ("received, none done", [5, 6, 7], [], None, 3),
        ("first done", [5, 6, 7], [5], 6, 2),
        ("all done in order", [5, 6, 7], [5, 6, 7], 8, 0),
        ("all done backwards", [5, 6, 7], [7, 6, 5], 8, 0),
        ("a later one done, the first not", [5, 6, 7], [6, 7], None, 1),
        ("gap in the middle", [5, 6, 7, 8], [5, 7, 8], 6, 1),
        ("gap filled last", [5, 6, 7, 8], [5, 7, 8, 6], 9, 0),
        ("offsets with holes (compaction, transactions)", [3, 10, 42], [10, 3], 11, 1),
        ("re-fetched offsets are ignored", [5, 6, 5, 6, 7], [5, 6, 7], 8, 0),
    ],
)
def test_commit_only_when_every_earlier_offset_is_done(
    label, received, completed, want_commit, want_outstanding
):
    offsets = PartitionOffsets()
    for offset in received:
        offsets.receive(offset)
    for offset in completed:
        offsets.complete(offset)
    assert offsets.to_commit() == want_commit, label
    assert offsets.outstanding == want_outstanding, label


def test_a_committed_offset_is_not_committed_again():
    offsets = PartitionOffsets()
    offsets.receive(1)
    offsets.complete(1)
    assert offsets.to_commit() == 2
    offsets.committed = 2
    assert offsets.to_commit() is None
    offsets.receive(2)
    offsets.complete(2)
    assert offsets.to_commit() == 3


def test_refetch_is_reported():
    offsets = PartitionOffsets()
    assert offsets.receive(4) is True
    assert offsets.receive(4) is False
    assert offsets.receive(3) is False
    assert offsets.receive(5) is True


def test_tracker_counts_outstanding_across_partitions_and_commits_per_partition():
    tracker = OffsetTracker()
    tracker.assign(["a-0", "a-1"])
    a0, a1 = tracker.get("a-0"), tracker.get("a-1")
    for offset in (0, 1, 2):
        tracker.receive("a-0", a0, offset)
    tracker.receive("a-1", a1, 9)
    assert tracker.outstanding == 4
    tracker.complete("a-0", a0, 1)
    tracker.complete("a-1", a1, 9)
    assert tracker.outstanding == 2
    assert tracker.to_commit() == {"a-1": 10}  # a-0 waits for offset 0
    tracker.committed({"a-1": 10})
    assert tracker.to_commit() == {}
    tracker.complete("a-0", a0, 0)
    assert tracker.to_commit() == {"a-0": 2}
    assert tracker.committed_offsets() == {"a-0": None, "a-1": 10}


def test_a_revoked_partition_drops_out_and_its_late_completions_are_ignored():
    tracker = OffsetTracker()
    tracker.assign(["a-0", "a-1"])
    a0 = tracker.get("a-0")
    tracker.receive("a-0", a0, 0)
    tracker.receive("a-0", a0, 1)
    tracker.assign(["a-1"])
    assert tracker.outstanding == 0
    assert not tracker.is_current("a-0", a0)
    tracker.complete("a-0", a0, 0)  # finished after the revocation: its new owner redelivers
    assert tracker.outstanding == 0
    assert tracker.to_commit() == {}
