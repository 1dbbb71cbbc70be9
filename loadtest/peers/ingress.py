"""1. Ingress: the same order event by wrk into ripple's gateway, Knative's Kafka broker receiver and the
Strimzi bridge (single events), and batches (gateway batch vs bridge records).

ripple's gateway is a private one (loadtest/isolation.py): the same function started as the stack
starts it, on its own port, producing to its own prefixed topics (created and deleted here), so
nothing of this benchmark reaches the stack's consumers. Like the peers, it is measured without
an ingress in front (the local activator stands in for Knative's queue-proxy; the peers' pods
would have theirs too)."""

from __future__ import annotations

import argparse
import time

from loadtest.gateway.run import run_wrk, token
from loadtest.isolation import IsolationError, PrivateGateway, gateway_instances
from ripple_stack.secrets import load_secrets

from . import procs
from .bench import Bench
from .report import Measurement


def run(bench: Bench) -> None:
    bench.snapshot("ingress")
    config = bench.config
    wrk_args = argparse.Namespace(
        threads=config.threads, connections=config.connections, duration=config.seconds
    )
    warm_args = argparse.Namespace(
        threads=config.threads, connections=config.connections, duration=config.warmup
    )
    secrets = load_secrets(bench.settings)
    access_token = token(bench.settings, secrets)
    try:
        # As many one-process instances as Knative's KPA keeps for wrk's connections (2 for 32).
        instances = gateway_instances(config.connections)
        private = PrivateGateway(bench.settings, secrets, run=bench.run_id, instances=instances).start()
    except IsolationError as error:
        raise procs.PeerError(str(error)) from None
    try:
        run_with(bench, private, wrk_args, warm_args, access_token)
    finally:
        failure = private.stop()
        if failure:
            bench.notes.append(failure)


def run_with(
    bench: Bench,
    private: PrivateGateway,
    wrk_args: argparse.Namespace,
    warm_args: argparse.Namespace,
    access_token: str,
) -> None:
    config = bench.config
    gateway = private.url
    topic = bench.topic("ingress")
    print(f"ingress: wrk -t{config.threads} -c{config.connections} -d{config.seconds}s", flush=True)

    def ripple(batch: int) -> Measurement:
        gateway_wrk(gateway, batch, warm_args, access_token)
        key = "gateway-single" if batch == 1 else "gateway-batch"
        what = "ripple gateway, binary event" if batch == 1 else f"ripple gateway, batch of {batch}"
        before = sum(procs.tree_cpu_seconds(p.pid) for p in private.processes)
        result = gateway_wrk(gateway, batch, wrk_args, access_token)
        cpu = sum(procs.tree_cpu_seconds(p.pid) for p in private.processes) - before
        return bench.wrk_measurement(key, what, result, batch, cpu)

    bench.measure(lambda: ripple(1))

    receiver = procs.start_receiver(
        bench.built.receiver_jar,
        config.java21,
        bench.run_dir / "receiver",
        config.receiver_port,
        bench.bootstrap,
        topic,
    )
    try:
        base = f"http://127.0.0.1:{config.receiver_port}"

        def knative() -> Measurement:
            bench.wrk("/peer/bench", base, "binary", 1, config.warmup)
            before = procs.tree_cpu_seconds(receiver.pid)
            result = bench.wrk("/peer/bench", base, "binary", 1, config.seconds)
            cpu = procs.tree_cpu_seconds(receiver.pid) - before
            return bench.wrk_measurement(
                "knative-single", "Knative broker receiver, binary event", result, 1, cpu
            )

        bench.measure(knative)
    finally:
        receiver.stop()

    bridge = procs.start_bridge(
        bench.built.bridge_home, config.java17, bench.run_dir / "bridge", config.bridge_port, bench.bootstrap
    )
    try:
        base = f"http://127.0.0.1:{config.bridge_port}"

        def strimzi(batch: int) -> Measurement:
            bench.wrk(f"/topics/{topic}", base, "bridge", batch, config.warmup)
            before = procs.tree_cpu_seconds(bridge.pid)
            result = bench.wrk(f"/topics/{topic}", base, "bridge", batch, config.seconds)
            cpu = procs.tree_cpu_seconds(bridge.pid) - before
            key = "bridge-single" if batch == 1 else "bridge-batch"
            what = f"Strimzi bridge, {batch} record{'s' if batch > 1 else ''}/request"
            return bench.wrk_measurement(key, what, result, batch, cpu)

        for batch in (1, config.batch):
            bench.measure(lambda b=batch: strimzi(b))
    finally:
        bridge.stop()

    bench.measure(lambda: ripple(config.batch))
    served_by = sorted(
        {procs.short_command(procs.command_line(pid)) for pid in procs.listening_pids(private.port)}
    )
    bench.notes.append(f"{gateway} was served by: {', '.join(served_by) or 'nothing (?)'}")
    bench.notes.append(
        f"ripple's gateway is a private one (knative/gateway/service.yaml's command and env, "
        f"{private.instances} instance(s) on one port as the KPA keeps for {config.connections} "
        f"in flight, {private.process and len(private.pids())} processes) writing to its own topics "
        f"{private.prefix}* (created and deleted by the run, {private.records()} records at the end); "
        "the peers write to a private 3-partition topic. All producers: acks=all, idempotent, "
        "linger 5 ms. CPU ms/event is each server's process tree (from /proc)."
    )


def gateway_wrk(url: str, batch: int, args: argparse.Namespace, access_token: str) -> dict:
    """loadtest/gateway/run.py's wrk run, once the gateway answers (others restart it now and then)."""
    deadline = time.monotonic() + 90
    while procs.http_status(url + "/healthz") is None:
        if time.monotonic() > deadline:
            raise procs.PeerError(f"ripple's gateway at {url} did not answer for 90 s")
        time.sleep(2)
    try:
        return run_wrk(url, batch, args, access_token)
    except SystemExit as error:  # run_wrk exits with wrk's output when wrk fails
        raise procs.PeerError(str(error)) from None
