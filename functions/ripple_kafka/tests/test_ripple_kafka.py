"""ripple_kafka: the report thread polls until closed; close drops what is pending."""

from __future__ import annotations

import os
import threading

from ripple_kafka import ReportedProducer


class RecordingProducer:
    def __init__(self, fail_on_close: bool = False) -> None:
        self.polled = threading.Event()
        self.calls: list[str] = []
        self.fail_on_close = fail_on_close

    def poll(self, timeout: float) -> int:
        self.polled.set()
        threading.Event().wait(min(timeout, 0.01))
        return 0

    def purge(self) -> None:
        self.calls.append("purge")
        if self.fail_on_close:
            raise RuntimeError("producer already failed")

    def flush(self, timeout: float) -> int:
        self.calls.append(f"flush({timeout})")
        return 0


def test_the_report_thread_polls_until_closed() -> None:
    producer = RecordingProducer()
    reported = ReportedProducer(producer)
    assert reported.pid == os.getpid()
    assert producer.polled.wait(2)
    reported.close()
    reported.thread.join(2)
    assert not reported.thread.is_alive()
    assert producer.calls == ["purge", "flush(0)"]


def test_closing_a_failed_producer_does_not_raise() -> None:
    reported = ReportedProducer(RecordingProducer(fail_on_close=True))
    reported.close()
    reported.thread.join(2)
    assert not reported.thread.is_alive()
