"""The Trigger dispatcher's CPU per delivery, against a trivial sink (issue 22).

    .venv/bin/python -m loadtest.broker.trigger_cpu [--events 20000] [--parallelism 64]
        [--standins-dir DIR] [--profile FILE.collapsed]

With the stack's RabbitMQ up: a private Broker and a Trigger like the live `notifier` one (its
parallelism unless --parallelism, its delivery) whose subscriber is a private nginx answering 202
(loadtest/dispatcher/sink.py), so the dispatcher's own cost is what is measured. `--events` flagged
order events are published to the Broker's exchange as the ingress publishes them (message.py),
then a private dispatcher is started on them: deliveries/s, and the dispatcher process's CPU
(user + system) per delivery between 10 % and 90 % of them, counted from its
ripple_trigger_events_delivered_total. `--standins-dir` runs the dispatcher from another build's
knative_standins (a folder holding it, e.g. a `git archive` of an older commit's infra/local), for
before/after runs. `--profile` records the dispatcher with py-spy over that window (raw collapsed
stacks, `--gil`, 100 Hz). Its exchange and queues are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import yaml
from cloudevents.http import CloudEvent

from knative_standins.broker.manifest import load_all
from knative_standins.broker.message import to_message
from knative_standins.broker.topology import declare_trigger, exchange_name, queue_name
from loadtest.broker.bench import FLAGGED_BODY, broker_documents, notifier_trigger, start, tear_down
from loadtest.dispatcher.sink import trivial_sink
from loadtest.measure import TICK_S, bench_event_attributes, count_until, cpu_ticks, free_port
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import load_settings

DELIVERED = re.compile(rb"^ripple_trigger_events_delivered_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def delivered(metrics_url: str) -> int:
    """The dispatcher's delivered counter (0 until its metrics server answers)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as answer:
            match = DELIVERED.search(answer.read())
    except OSError:
        return 0
    return int(float(match.group(1))) if match else 0


def publish(channel, exchange: str, source: str, total: int) -> None:
    """`total` flagged-order messages, persistent, as the ingress publishes them (unconfirmed: the
    caller waits for the queue to hold them all)."""
    for n in range(total):
        attributes = bench_event_attributes("dev.ripple.shop.order.flagged", source)
        properties, body = to_message(CloudEvent(attributes, (FLAGGED_BODY % n).encode()))
        channel.basic_publish(exchange, "", body, properties)


def run(events: int, parallelism: int | None, standins_dir: Path | None, profile: Path | None) -> str:
    settings = load_settings()
    amqp_url = settings.amqp_url(load_secrets(settings)["RIPPLE_RABBITMQ_PASSWORD"])
    broker = f"trigger-cpu-{uuid.uuid4().hex[:6]}"
    source = f"/bench/{broker}"
    with tempfile.TemporaryDirectory(prefix="ripple-trigger-cpu-") as scratch, trivial_sink() as sink:
        work = Path(scratch)
        (work / broker).mkdir()
        documents = [*broker_documents(broker), notifier_trigger(broker, parallelism, sink, sink)]
        (work / broker / "broker.yaml").write_text(yaml.safe_dump_all(documents))
        (notifications,) = [n for n in load_all(sorted(work.glob("*/*.yaml"))) if n.broker.name == broker]
        (trigger,) = notifications.triggers
        amqp = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = amqp.channel()
        declare_trigger(channel, notifications.broker, trigger)
        dispatcher = None
        try:
            publish(channel, exchange_name(notifications.broker), source, events)
            while channel.queue_declare(queue_name(trigger), passive=True).method.message_count < events:
                time.sleep(0.2)
            if standins_dir is not None:
                # Ahead of the editable install's finder: the dispatcher imports that build.
                os.environ["PYTHONPATH"] = f"{standins_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
            metrics_port = free_port()
            log = settings.log_dir / "bench-trigger-cpu.log"
            command = ["knative_standins.broker", "dispatch", broker, trigger.name, "--manifests", str(work)]
            dispatcher = start([*command, "--metrics-port", str(metrics_port)], log)
            pid = dispatcher.pid
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            spy = None
            if profile is not None:
                spy_command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
                spy_command += ["--gil", "--rate", "100", "--format", "raw", "--output", str(profile)]
                spy = subprocess.Popen(spy_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                progress = count_until(
                    lambda: delivered(metrics_url),
                    events,
                    dispatcher,
                    log,
                    "delivered",
                    interval_s=0.5,
                    reading=lambda: (cpu_ticks(pid) or (0, 0))[0] * TICK_S,
                )
            finally:
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
                    spy.wait(60)
            (_, cpu10), (_, cpu90) = progress.marks[0.1], progress.marks[0.9]
            steady = progress.steady(events)
            cpu_ms = (cpu90 - cpu10) / (0.8 * events) * 1000
            build = f"knative_standins from {standins_dir}" if standins_dir else "this checkout"
            return (
                f"{events} deliveries, parallelism {trigger.parallelism}, {build}: {steady:,.0f}/s "
                f"steady (10-90 %), {cpu_ms:.3f} ms of dispatcher CPU per delivery"
            )
        finally:
            tear_down(amqp, channel, notifications.broker, trigger, (dispatcher,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--parallelism", type=int, help="the live notifier Trigger's by default")
    parser.add_argument("--standins-dir", type=Path, help="a folder holding another build's knative_standins")
    parser.add_argument("--profile", type=Path, help="py-spy raw collapsed stacks of the dispatcher")
    arguments = parser.parse_args()
    print(run(arguments.events, arguments.parallelism, arguments.standins_dir, arguments.profile), flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
