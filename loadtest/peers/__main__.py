"""`make bench-peers`: ripple's event path side by side with its upstream peers, in one run.

    .venv/bin/python -m loadtest.peers          (PEERS_* settings: loadtest/peers/README.md)

Builds the peers from source (cached per tag, loadtest/peers/build.py), then on the local stack's
Kafka, one thing at a time:
  1. ingress, wrk with the same order event: ripple's gateway vs Knative's Kafka broker receiver
     vs the Strimzi Kafka Bridge (single events), and batches (gateway batch vs bridge records);
  2. dispatch of a pre-filled backlog to the same trivial sink (a private nginx `return 202`):
     ripple's KafkaSource dispatcher vs Knative's dispatcher-loom, unordered and ordered;
  3. the consumer path: Kafka -> ripple's dispatcher -> the stack's event-store -> PostgreSQL,
     unordered (no peer; `make bench-dispatcher`'s code, on a private topic, its rows deleted);
  4. Kafka's producer ceiling: ProducerPerformance, acks=all.
Prints one markdown table (plus details) and writes it to loadtest/reports/peers-<time>.md.
Only private topics, consumer groups, ports and processes are used (ripple's gateway is a private
one, loadtest/isolation.py; the store section sends into the stack's event-store, with a source of
its own whose rows it deletes); the run ends by checking that the stack's topics did not grow. The
shared stack is read, never stopped (PEERS_PAUSE pauses its consumers while ingress is
measured). The peers are stopped and the topics deleted at the end, also on failure.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest import isolation
from ripple_stack.settings import REPO_ROOT, ConfigError, Settings, load_settings
from ripple_stack.stack import Stack

from . import dispatch, ingress, procs, producer, store
from .bench import Bench, loadavg
from .build import BuildError, build_all
from .config import SECTIONS, load_config
from .report import render

# Each measurement is one module; they run in config.SECTIONS' order (PEERS_ONLY picks some).
RUNS = {"ingress": ingress.run, "dispatch": dispatch.run, "store": store.run, "producer": producer.run}


@contextmanager
def paused(settings: Settings, components: tuple[str, ...], notes: list[str]) -> Iterator[None]:
    """Stop the named stack components for the body, and always start them again."""
    stack = Stack(settings, lambda line: print(line, flush=True))
    stopped = []
    try:
        for name in components:
            stack.stop(name)
            stopped.append(name)
        notes.append(f"paused while ingress was measured (PEERS_PAUSE): {', '.join(stopped)}")
        yield
    finally:
        for name in reversed(stopped):
            stack.start(name)


def main() -> int:
    try:
        settings = load_settings()
        config = load_config(settings)
        for tool in ("wrk", "nginx"):
            if not any((Path(d) / tool).exists() for d in [*os.environ["PATH"].split(":"), "/usr/sbin"]):
                raise ConfigError(
                    f"{tool} is missing: run `make up` (it installs the Debian package) and rerun."
                )
        started = time.monotonic()
        built = build_all(config)
        print(f"peers ready ({time.monotonic() - started:.0f} s)", flush=True)
    except (ConfigError, BuildError) as error:
        print(f"bench-peers: {error}", file=sys.stderr)
        return 2
    bench = Bench(settings, config, built)
    stack_topics = isolation.StackTopics(settings.kafka_bootstrap)
    sections = [s for s in SECTIONS if not config.only or s in config.only]
    load_start = loadavg()
    failed = []
    try:
        for section in sections:
            try:
                if section == "ingress" and config.pause:
                    with paused(settings, config.pause, bench.notes):
                        RUNS[section](bench)
                else:
                    RUNS[section](bench)
            except Exception as error:  # the report of the other sections is still worth having
                failed.append(section)
                if not isinstance(error, procs.PeerError):
                    traceback.print_exc()
                bench.notes.append(f"{section} failed: {type(error).__name__}: {error}")
                print(f"bench-peers: {section} failed: {error}", file=sys.stderr)
    finally:
        bench.cleanup()
        untouched, sentence = stack_topics.check()
        bench.notes.append(sentence)
        if not untouched:
            failed.append("isolation")
    markdown = render(bench, built, config, load_start, loadavg())
    reports = REPO_ROOT / "loadtest" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"peers-{bench.run_id}.md"
    path.write_text(markdown)
    print()
    print(markdown)
    print(f"report: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
