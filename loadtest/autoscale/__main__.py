"""python -m loadtest.autoscale [--cluster ...]: the autoscale-from-zero demo and its report.

Locally (`make demo-autoscale`) it reads instance counts from the activators' metrics in
Prometheus, cold starts from the activator's log and each instance's memory from the pids the
activators' /status names. With --cluster it drives a deployed
namespace instead and reads ready pods with kubectl (documented in loadtest/README.md; CI does
not run it). With --ripple-cluster (`make cluster-demo`) it drives the project's own Kubernetes +
Knative (infra/cluster) through that cluster's nginx and reads real Knative's autoscaler
(loadtest/autoscale/cluster.py).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import replace

from loadtest.cli import add_seconds, options_from, setup_logging
from loadtest.scenarios.config import load_config
from loadtest.scenarios.shop import TokenError
from ripple_stack.component import PrerequisiteError

from .demo import DemoOptions, run_demo
from .observe import KubectlInstances, PrometheusInstances


def _parser(defaults: DemoOptions) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.autoscale",
        description="Wait for the consumers at zero, drive a step then a spike through nginx, wait for "
        "zero again; report instances, lag, cold starts and delivery delay, and check nothing was lost.",
    )
    parser.add_argument("--step-rate", type=float, default=defaults.step_rate, help="requests/s of the step")
    parser.add_argument(
        "--spike-rate", type=float, default=defaults.spike_rate, help="requests/s of the spike"
    )
    parser.add_argument("--batch", type=int, default=defaults.batch, help="events per request")
    add_seconds(parser, "--step", "step_s", defaults.step_s, "seconds of the step")
    add_seconds(parser, "--spike", "spike_s", defaults.spike_s, "seconds of the spike")
    add_seconds(
        parser, "--zero-timeout", "zero_timeout_s", defaults.zero_timeout_s, "seconds to wait for zero"
    )
    add_seconds(
        parser,
        "--drain-timeout",
        "drain_timeout_s",
        defaults.drain_timeout_s,
        "seconds to wait for the store",
    )
    add_seconds(
        parser,
        "--memory-every",
        "memory_every_s",
        defaults.memory_every_s,
        "seconds between readings of every instance's RSS",
    )
    parser.add_argument("--cluster", action="store_true", help="drive a deployed namespace (kubectl)")
    parser.add_argument(
        "--ripple-cluster",
        action="store_true",
        help="drive the project's own Kubernetes + Knative (make cluster-up cluster-deploy)",
    )
    parser.add_argument("--namespace", default="ripple", help="--cluster: the namespace")
    parser.add_argument("--target", help="--cluster: the edge's URL (the Route of nginx)")
    parser.add_argument("--token-url", help="--cluster: Keycloak's token endpoint of the realm")
    parser.add_argument("--postgres-dsn", help="--cluster: libpq DSN to check storage (optional)")
    parser.add_argument("--kafka-bootstrap", help="--cluster: Kafka bootstrap for lag (optional)")
    return parser


def _on_ripple_cluster(config, options: DemoOptions) -> tuple:
    from .cluster import AutoscalerInstances, ClusterTokens, cluster_target

    with cluster_target() as target:
        config = replace(config, target_url=target.edge_url)
        return run_demo(
            config,
            options,
            AutoscalerInstances(target.settings),
            cold_start_log=None,
            postgres_dsn=target.postgres_dsn,
            kafka_bootstrap=None,
            mode="knative-cluster",
            tokens=ClusterTokens(target.settings),
        )


def _status_urls(stack) -> dict[str, str]:
    """Each local activator's /status (its instances' pids, for their memory)."""
    from ripple_stack.components.functions import knative_functions

    return {
        function.name: f"http://{stack.host}:{function.admin_port(stack)}/status"
        for function in knative_functions()
    }


def per_client_limit(rate: str) -> float | None:
    """nginx's limit_req rate ("20r/s", "600r/m") as requests per second; None if unreadable."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*r/([sm])\s*", rate)
    if not match:
        return None
    return float(match.group(1)) / (60.0 if match.group(2) == "m" else 1.0)


def check_under_client_limit(rate: float, environ: Mapping[str, str] = os.environ) -> None:
    """Stop before a step or spike the local edge would cut: the demo is one client (one token),
    and nginx refuses a client's requests above RATE_PER_CLIENT with 429, so a faster load
    measures the limit, not the path (a 36 req/s run here: 20 r/s admitted, 20,138 refused)."""
    from ripple_stack.components.nginx import selected_profile

    profile, values = selected_profile(environ)
    limit = per_client_limit(values.get("RATE_PER_CLIENT", ""))
    if limit is not None and rate >= limit:
        raise SystemExit(
            f"--step-rate / --spike-rate {rate:g} req/s is at or above nginx's per-client limit "
            f"({values['RATE_PER_CLIENT']}, profile {profile}), and the demo is one client: the excess "
            "would be refused with 429. Offer the events in larger batches instead (--batch, up to "
            "the gateway's MAX_BATCH_EVENTS) or raise RIPPLE_NGINX_RATE_PER_CLIENT before make up."
        )


def main(argv: list[str] | None = None) -> int:
    parser = _parser(DemoOptions())
    arguments = parser.parse_args(argv)
    setup_logging()
    options = options_from(DemoOptions, arguments)
    try:
        config = load_config()
        if arguments.ripple_cluster:
            directory, result = _on_ripple_cluster(config, options)
        elif arguments.cluster:
            if not arguments.target or not arguments.token_url:
                parser.error(
                    "--cluster needs --target (the edge URL) and --token-url (Keycloak's token endpoint)"
                )
            config = replace(config, target_url=arguments.target, token_url=arguments.token_url)
            directory, result = run_demo(
                config,
                options,
                KubectlInstances(arguments.namespace),
                cold_start_log=None,
                postgres_dsn=arguments.postgres_dsn,
                kafka_bootstrap=arguments.kafka_bootstrap,
                mode="cluster",
            )
        else:
            check_under_client_limit(max(options.step_rate, options.spike_rate))
            directory, result = run_demo(
                config,
                options,
                PrometheusInstances(config.stack.prometheus_url, status_urls=_status_urls(config.stack)),
                cold_start_log=config.stack.home / "logs" / "cold-starts.jsonl",
                postgres_dsn=config.postgres_dsn,
                kafka_bootstrap=config.stack.kafka_bootstrap,
                mode="local",
            )
    except (PrerequisiteError, TokenError, RuntimeError) as error:
        print(f"demo-autoscale: {error}", file=sys.stderr)
        return 2
    print(f"report: {directory / 'report.md'}\nverdict: {result}")
    return 0 if result == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
