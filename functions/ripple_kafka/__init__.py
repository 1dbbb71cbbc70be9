"""A librdkafka producer with the thread that serves its delivery reports, for the functions that
produce (the gateway's events, order-alerts' alerts).

confluent-kafka calls a record's delivery callback only from `poll()`; a function whose requests
wait for their own acknowledgement needs something polling all the time, so each producer gets one
daemon thread doing nothing else. The producer is made by the caller (its options are the
function's), so this module never imports confluent_kafka: order-alerts imports it with its first
alert, not at its cold start (issue 22).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

# How long the report thread blocks in one poll; it wakes at once when a report arrives.
POLL_INTERVAL_S = 0.2


class ReportedProducer:
    """`producer` (a confluent_kafka.Producer) and the thread that serves its delivery reports.

    `pid` is the process that made it: a forked child must make its own (librdkafka's threads do
    not survive a fork).
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.pid = os.getpid()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="kafka-delivery-reports", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            self.producer.poll(POLL_INTERVAL_S)

    def close(self) -> None:
        """Stop serving reports; pending records of a failed producer are dropped (their requests
        answer 503)."""
        self.closed.set()
        try:
            self.producer.purge()
            self.producer.flush(0)
        except Exception as error:  # closing a failed producer: nothing is left to do
            log.debug("closing the failed producer: %s", error)
