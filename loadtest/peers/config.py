"""Every setting of `make bench-peers`, read from the environment in this one place.

The peers are upstream projects built from source (never committed here): the Strimzi Kafka
Bridge and Knative's Kafka data plane. Their sources come from a git URL by default, or from a
local clone / snapshot when the machine cannot reach GitHub. Build output and run files live
under $RIPPLE_HOME/peers (default .ripple/peers), never in the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from knative_standins.env import whole_number
from ripple_stack.settings import ConfigError, Settings

BRIDGE_GIT_URL = "https://github.com/strimzi/strimzi-kafka-bridge.git"
KNATIVE_GIT_URL = "https://github.com/knative-extensions/eventing-kafka-broker.git"
# The measurements of a run, in the order they run (PEERS_ONLY picks some).
SECTIONS = ("ingress", "dispatch", "store", "producer")


@dataclass(frozen=True)
class Peer:
    """One upstream repository: where its source comes from and which tag is built."""

    name: str  # repository name, also the folder name under PEERS_SOURCES
    owner: str
    source: str  # git URL or local path
    tag: str


@dataclass(frozen=True)
class PeersConfig:
    home: Path  # $RIPPLE_HOME/peers
    bridge: Peer
    knative: Peer
    java17: Path  # builds and runs the bridge 0.33.x (release 17)
    java21: Path  # builds and runs Knative's data plane (needs 21+)
    seconds: int  # wrk duration per ingress run
    warmup: int  # wrk run before each measured one (JIT, producers per connection)
    threads: int
    connections: int
    batch: int  # events per request in the batch rows
    dispatch_events: int  # backlog per dispatch run
    store_events: int  # backlog of the store section (Kafka -> dispatcher -> event-store -> PostgreSQL)
    perf_records: int  # records of ProducerPerformance
    record_size: int
    bridge_port: int
    receiver_port: int
    sink_port: int
    only: frozenset[str]  # sections to run: ingress, dispatch, store, producer (all when empty)
    # Components of the stack stopped while ingress is measured: they consume what the gateway
    # writes and would share the two cores with it (issue 13 measured with them paused).
    pause: tuple[str, ...] = ()


def _int(name: str, default: int, minimum: int = 1) -> int:
    return whole_number(name, default, minimum)


def _find_jdk(variable: str, candidates: tuple[str, ...], need: str) -> Path:
    raw = os.environ.get(variable)
    paths = (raw,) if raw else candidates
    for candidate in paths:
        if candidate and (Path(candidate) / "bin" / "javac").exists():
            return Path(candidate)
    raise ConfigError(
        f"No {need} found (tried {', '.join(paths)}): install one or set {variable}=<JDK home>."
    )


def _source(variable: str, name: str, owner: str, default_url: str) -> str:
    """The peer's own variable, else its folder under PEERS_SOURCES, else the git URL."""
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    root = os.environ.get("PEERS_SOURCES")
    if not root:
        return default_url
    # a plain clone (<root>/<name>), a bare one (<root>/<name>.git) or the fetch tool's layout
    for candidate in (Path(root) / name, Path(root) / f"{name}.git", Path(root) / f"{owner}+{name}" / "repo"):
        if candidate.exists():
            return str(candidate)
    raise ConfigError(
        f"PEERS_SOURCES={root} has no {name}, {name}.git or {owner}+{name}/repo: "
        f"put a clone of {default_url} there or set {variable}."
    )


def load_config(settings: Settings) -> PeersConfig:
    only = frozenset(s for s in os.environ.get("PEERS_ONLY", "").replace(",", " ").split() if s)
    unknown = only - set(SECTIONS)
    if unknown:
        raise ConfigError(
            f"PEERS_ONLY={' '.join(sorted(unknown))}: use one or more of {', '.join(SECTIONS)}."
        )
    return PeersConfig(
        home=settings.home / "peers",
        bridge=Peer(
            "strimzi-kafka-bridge",
            "strimzi",
            _source("PEERS_BRIDGE_SOURCE", "strimzi-kafka-bridge", "strimzi", BRIDGE_GIT_URL),
            os.environ.get("PEERS_BRIDGE_TAG", "0.33.1"),
        ),
        knative=Peer(
            "eventing-kafka-broker",
            "knative-extensions",
            _source("PEERS_KNATIVE_SOURCE", "eventing-kafka-broker", "knative-extensions", KNATIVE_GIT_URL),
            os.environ.get("PEERS_KNATIVE_TAG", "knative-v1.23.0"),
        ),
        java17=_find_jdk(
            "PEERS_JAVA17_HOME",
            ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/temurin-17-jdk-amd64"),
            "JDK 17 (for the Strimzi bridge 0.33.x)",
        ),
        java21=_find_jdk(
            "PEERS_JAVA21_HOME",
            (
                "/usr/lib/jvm/temurin-25-jdk-amd64",
                "/usr/lib/jvm/temurin-21-jdk-amd64",
                "/usr/lib/jvm/java-25-openjdk-amd64",
                "/usr/lib/jvm/java-21-openjdk-amd64",
            ),
            "JDK 21+ (for Knative's data plane)",
        ),
        seconds=_int("PEERS_SECONDS", 15),
        warmup=_int("PEERS_WARMUP", 10),
        threads=_int("PEERS_THREADS", 2),
        connections=_int("PEERS_CONNECTIONS", 32),
        batch=_int("PEERS_BATCH", 100, 2),
        dispatch_events=_int("PEERS_DISPATCH_EVENTS", 20000, 100),
        store_events=_int("PEERS_STORE_EVENTS", 40000, 100),
        perf_records=_int("PEERS_PERF_RECORDS", 1000000, 1000),
        record_size=_int("PEERS_RECORD_SIZE", 230),
        bridge_port=_int("PEERS_BRIDGE_PORT", 28180, 1024),
        receiver_port=_int("PEERS_RECEIVER_PORT", 28181, 1024),
        sink_port=_int("PEERS_SINK_PORT", 28182, 1024),
        only=only,
        pause=tuple(
            os.environ.get("PEERS_PAUSE", "kafkasource-event-store kafkasource-order-alerts flink")
            .replace(",", " ")
            .split()
        ),
    )
