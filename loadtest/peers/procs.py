"""Start and stop the benchmark's own processes, and read CPU figures from /proc.

Every process here is started by the benchmark in its own session and stopped by its pid only
(TERM, then KILL after a grace period): the shared stack is never touched. The peers get their
configuration as files under $RIPPLE_HOME/peers/run, shaped like what their Kubernetes
deployments mount (see README.md for the upstream files each one mirrors).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from loadtest.measure import http_status

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class PeerError(Exception):
    """A peer did not start or did not become ready; the message names its log."""


def port_busy(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Process:
    """One child process in its own session, with its output in a log file."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as output:
            self.popen = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_until(self, ready, what: str, timeout: float = 120.0) -> float:
        """Seconds until ready() is true; PeerError if the process exits or time runs out."""
        started = time.monotonic()
        while not ready():
            if not self.alive():
                tail = "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-15:])
                raise PeerError(f"{self.name} exited before {what} (see {self.log}):\n{tail}")
            if time.monotonic() - started > timeout:
                self.stop()
                raise PeerError(f"{self.name}: no {what} after {timeout:.0f} s (see {self.log})")
            time.sleep(0.3)
        return time.monotonic() - started

    def stop(self, grace: float = 20.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its live descendants, plus what its reaped children used."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = fields
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is None:
            continue
        # fields[11..14] = utime stime cutime cstime (stat fields 14-17)
        total += sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def listening_pids(port: int) -> list[int]:
    """The processes holding a listening TCP socket on the port (e.g. the stack's gateway workers)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{entry}/fd")):
                pids.append(int(entry))
    return pids


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kafka_broker_identity() -> frozenset[tuple[int, str]]:
    """(pid, start time) of the running Kafka broker JVMs: it changes when someone restarts Kafka."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"kafka.Kafka\0" not in cmd:
                continue
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        found.add((int(entry), raw[raw.rindex(")") + 2 :].split()[19]))  # field 22: start time
    return frozenset(found)


def busiest_processes(window: float = 3.0, top: int = 8) -> list[tuple[float, str]]:
    """(% of one core, command) of the processes that used the most CPU over a short window."""

    def sample() -> dict[int, tuple[int, str]]:
        out = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    raw = Path(f"/proc/{entry}/stat").read_text()
                    cmd = (
                        Path(f"/proc/{entry}/cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                    )
                except OSError:
                    continue
                fields = raw[raw.rindex(")") + 2 :].split()
                out[int(entry)] = (
                    int(fields[11]) + int(fields[12]),
                    cmd.strip() or raw[raw.index("(") + 1 : raw.rindex(")")],
                )
        return out

    before = sample()
    time.sleep(window)
    after = sample()
    used = [
        ((ticks - before[pid][0]) / CLOCK_TICKS / window * 100, cmd)
        for pid, (ticks, cmd) in after.items()
        if pid in before and ticks > before[pid][0]
    ]
    return sorted(used, reverse=True)[:top]


def short_command(cmd: str) -> str:
    """A readable name for a command line (java main class or jar, python module, program)."""
    words = cmd.split()
    if not words:
        return "?"
    program = Path(words[0]).name
    for marker in ("-jar", "-m"):
        if marker in words[:-1]:
            following = words[words.index(marker) + 1 :]
            return " ".join([program, Path(following[0]).name, *(Path(w).name for w in following[1:2])])[:60]
    if program == "java":
        classes = [w for w in words if re.fullmatch(r"[a-z][\w]*(\.[a-z_][\w]*)*\.[A-Z]\w*", w)]
        if classes:
            return f"java {classes[0].rsplit('.', 1)[-1]}"
    return " ".join([program, *(Path(w).name for w in words[1:3])])[:60]


# --- the trivial sink: a private nginx that answers 202 and logs one line per request -----------


class Sink:
    """nginx with `return 202`, on its own prefix, port and pid file; logs `$msec $status $ce_id`."""

    def __init__(self, home: Path, port: int) -> None:
        self.dir, self.port = home / "sink", port
        self.access_log = self.dir / "logs" / "access.log"
        self.pid_file = self.dir / "nginx.pid"
        self.master: int | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise PeerError("nginx is missing: run `make up` (it installs the Debian package) and rerun.")
        if port_busy(self.port):
            raise PeerError(f"port {self.port} is in use: set PEERS_SINK_PORT to a free port.")
        for sub in ("conf", "logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        temp = self.dir / "tmp"
        (self.dir / "conf" / "nginx.conf").write_text(
            f"""worker_processes 1;
pid {self.pid_file};
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format peer '$msec $status $http_ce_id';
    access_log {self.access_log} peer;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{self.port};
        location / {{ return 202; }}
    }}
}}
"""
        )
        subprocess.run(
            [
                nginx,
                "-p",
                str(self.dir),
                "-e",
                f"{self.dir}/logs/error.log",
                "-c",
                f"{self.dir}/conf/nginx.conf",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(50):
            if self.pid_file.exists() and self.pid_file.read_text().strip():
                self.master = int(self.pid_file.read_text())
                return
            time.sleep(0.1)
        raise PeerError(f"the sink nginx did not start (see {self.dir}/logs/error.log)")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def reset(self) -> None:
        """An empty access log (USR1 makes nginx reopen it)."""
        self.access_log.write_text("")
        if self.master:
            os.kill(self.master, signal.SIGUSR1)
            time.sleep(0.3)

    def count(self) -> int:
        try:
            with self.access_log.open("rb") as log:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))
        except OSError:
            return 0

    def summary(self) -> dict:
        """Requests, distinct ce-ids, non-2xx answers and the sorted request times (epoch s)."""
        lines = [line.split() for line in self.access_log.read_text().splitlines() if line.strip()]
        return {
            "requests": len(lines),
            "distinct": len({parts[2] for parts in lines if len(parts) > 2}),
            "non_2xx": sum(1 for parts in lines if not parts[1].startswith("2")),
            "times": sorted(float(parts[0]) for parts in lines),
        }

    def stop(self) -> None:
        if self.master is None:
            return
        try:
            os.kill(self.master, signal.SIGQUIT)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(self.master, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


# --- the peers -----------------------------------------------------------------------------------


def start_bridge(bridge_home: Path, java17: Path, run_dir: Path, port: int, bootstrap: str) -> Process:
    """The Strimzi Kafka Bridge with acks=all, idempotence and linger 5 ms (as ripple's gateway)."""
    if port_busy(port):
        raise PeerError(f"port {port} is in use: set PEERS_BRIDGE_PORT to a free port.")
    run_dir.mkdir(parents=True, exist_ok=True)
    config, log4j = run_dir / "bridge.properties", run_dir / "bridge-log4j2.properties"
    config.write_text(
        "bridge.id=peer\n"
        f"http.host=127.0.0.1\nhttp.port={port}\nhttp.cors.enabled=false\n"
        f"kafka.bootstrap.servers={bootstrap}\n"
        "kafka.producer.acks=all\nkafka.producer.enable.idempotence=true\nkafka.producer.linger.ms=5\n"
    )
    # upstream's log4j2.properties, with the two INFO lines per HTTP request turned down to WARN
    log4j.write_text(
        "name = BridgeConfig\n"
        "appender.console.type = Console\nappender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss} %-5p [%t] %c{1}:%L - %m%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRefs = console\n"
        "rootLogger.appenderRef.console.ref = STDOUT\n"
        "logger.ops.name = http.openapi.operation\nlogger.ops.level = WARN\n"
    )
    process = Process(
        "strimzi-bridge",
        [str(bridge_home / "bin" / "kafka_bridge_run.sh"), "--config-file", str(config)],
        run_dir / "bridge.log",
        env={
            "JAVA_HOME": str(java17),
            "PATH": f"{java17}/bin:{os.environ['PATH']}",
            "KAFKA_BRIDGE_LOG4J_OPTS": f"-Dlog4j2.configurationFile=file:{log4j}",
        },
    )
    process.wait_until(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 204, "GET /ready = 204")
    return process


def _knative_logging(path: Path) -> None:
    path.write_text(
        "<configuration>\n"
        '  <appender name="console" class="ch.qos.logback.core.ConsoleAppender">\n'
        "    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level [%thread] %logger{36} - %msg%n</pattern></encoder>\n"
        "  </appender>\n"
        '  <logger name="org.apache.kafka" level="WARN"/>\n'
        '  <root level="INFO"><appender-ref ref="console"/></root>\n'
        "</configuration>\n"
    )


# config-kafka-source-data-plane's consumer settings (max.poll.records=50, commits every 5 s).
KAFKASOURCE_CONSUMER_PROPERTIES = (
    "key.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n"
    "value.deserializer=io.cloudevents.kafka.CloudEventDeserializer\n"
    "fetch.min.bytes=1\nheartbeat.interval.ms=3000\nmax.partition.fetch.bytes=65536\n"
    "session.timeout.ms=10000\nallow.auto.create.topics=true\nauto.offset.reset=earliest\n"
    "client.dns.lookup=use_all_dns_ips\nconnections.max.idle.ms=540000\ndefault.api.timeout.ms=2000\n"
    "enable.auto.commit=false\nexclude.internal.topics=true\nfetch.max.bytes=52428800\n"
    "isolation.level=read_committed\nmax.poll.interval.ms=300000\nmax.poll.records=50\n"
    "partition.assignment.strategy=org.apache.kafka.clients.consumer.StickyAssignor\n"
    "receive.buffer.bytes=65536\nrequest.timeout.ms=2000\nsecurity.protocol=PLAINTEXT\n"
    "send.buffer.bytes=131072\nauto.commit.interval.ms=5000\ncheck.crcs=true\nfetch.max.wait.ms=500\n"
    "metadata.max.age.ms=600000\nreconnect.backoff.max.ms=1000\nretry.backoff.ms=100\n"
)


def _reference(uid: str, kind: str, group_version: str) -> dict:
    return {"uuid": uid, "namespace": "peer", "name": "bench", "kind": kind, "groupVersion": group_version}


def _knative_config_dirs(run_dir: Path) -> Path:
    """config/, observability/ and features/ as the pods mount them; the logback file's path."""
    for sub in ("config", "observability", "features"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    logging = run_dir / "config" / "logging.xml"
    _knative_logging(logging)
    return logging


def _write_contract(run_dir: Path, uid: str, topic: str, bootstrap: str, **resource: object) -> Path:
    """contract.json with one resource, as the control plane writes it for the data plane."""
    contract = run_dir / "contract.json"
    contract.write_text(
        json.dumps(
            {
                "generation": "1",
                "resources": [
                    {
                        "uid": uid,
                        "topics": [topic],
                        "bootstrapServers": bootstrap,
                        "absentAuth": {},
                        **resource,
                    }
                ],
            }
        )
    )
    return contract


def _knative_env(service: str, run_dir: Path, **specific: str) -> dict[str, str]:
    """The environment both data-plane pods get from their manifests, plus the pod's own."""
    return {
        "SERVICE_NAME": service,
        "SERVICE_NAMESPACE": "knative-eventing",
        **specific,
        "METRICS_PUBLISH_QUANTILES": "false",
        "METRICS_JVM_ENABLED": "false",
        "CONFIG_OBSERVABILITY_PATH": str(run_dir / "observability"),
        "CONFIG_FEATURES_PATH": str(run_dir / "features"),
        "HTTP2_DISABLE": "true",
        "WAIT_STARTUP_SECONDS": "8",
        "ENABLE_VIRTUAL_THREADS": "false",
    }


def start_receiver(jar: Path, java21: Path, run_dir: Path, port: int, bootstrap: str, topic: str) -> Process:
    """Knative's Kafka broker receiver with a contract of one Broker whose ingress is /peer/bench.

    Env and files follow data-plane/config/broker/500-receiver.yaml; producer settings are the
    config-kafka-broker-data-plane ConfigMap's, except acks=all, idempotence and linger 5 ms, the
    same as ripple's gateway and the bridge here.
    """
    if port_busy(port):
        raise PeerError(f"port {port} is in use: set PEERS_RECEIVER_PORT to a free port.")
    logging = _knative_config_dirs(run_dir)
    producer = run_dir / "config" / "producer.properties"
    producer.write_text(
        "key.serializer=org.apache.kafka.common.serialization.StringSerializer\n"
        "value.serializer=io.cloudevents.kafka.CloudEventSerializer\n"
        "acks=all\nenable.idempotence=true\nlinger.ms=5\nbuffer.memory=33554432\nretries=2147483647\n"
        "batch.size=16384\nclient.dns.lookup=use_all_dns_ips\nconnections.max.idle.ms=600000\n"
        "delivery.timeout.ms=120000\nmax.block.ms=60000\nmax.request.size=1048576\nreceive.buffer.bytes=-1\n"
        "request.timeout.ms=2000\nmax.in.flight.requests.per.connection=5\nmetadata.max.age.ms=300000\n"
    )
    httpserver = run_dir / "config" / "httpserver.properties"
    httpserver.write_text("idleTimeout=0\nhost=127.0.0.1\n")
    uid = "peer-bench-0000-0000-0000-000000000001"
    contract = _write_contract(
        run_dir,
        uid,
        topic,
        bootstrap,
        ingress={"path": "/peer/bench"},
        reference=_reference(uid, "Broker", "eventing.knative.dev/v1"),
    )
    process = Process(
        "knative-receiver",
        [
            str(java21 / "bin" / "java"),
            "-XX:+CrashOnOutOfMemoryError",
            f"-Dlogback.configurationFile={logging}",
            "-jar",
            str(jar),
        ],
        run_dir / "receiver.log",
        env=_knative_env(
            "kafka-broker-receiver",
            run_dir,
            INGRESS_PORT=str(port),
            INGRESS_TLS_PORT=str(port + 1000),
            PRODUCER_CONFIG_FILE_PATH=str(producer),
            HTTPSERVER_CONFIG_FILE_PATH=str(httpserver),
            DATA_PLANE_CONFIG_FILE_PATH=str(contract),
            LIVENESS_PROBE_PATH="/healthz",
            READINESS_PROBE_PATH="/readyz",
        ),
    )
    # the contract is loaded once GET on the ingress path stops answering 404 (it answers 405)
    url = f"http://127.0.0.1:{port}/peer/bench"
    process.wait_until(lambda: http_status(url) not in (None, 404), "ingress path loaded")
    return process


def start_knative_dispatcher(
    jar: Path,
    java21: Path,
    run_dir: Path,
    bootstrap: str,
    topic: str,
    group: str,
    sink_url: str,
    ordered: bool,
) -> Process:
    """Knative's KafkaSource dispatcher with one KafkaSource egress (contract as the control plane
    writes it) and upstream's config-kafka-source-data-plane consumer settings (max.poll.records=50,
    offsets committed every 5 s) and pod JVM flags (1000Mi limit -> 70 % heap)."""
    logging = _knative_config_dirs(run_dir)
    for stale in (run_dir / "observability").iterdir():  # empty = metrics protocol none
        stale.unlink()
    consumer = run_dir / "config" / "consumer.properties"
    consumer.write_text(KAFKASOURCE_CONSUMER_PROPERTIES)
    producer = run_dir / "config" / "producer.properties"
    producer.write_text(
        "key.serializer=org.apache.kafka.common.serialization.StringSerializer\n"
        "value.serializer=io.cloudevents.kafka.CloudEventSerializer\nacks=all\nlinger.ms=0\n"
        "enable.idempotence=false\nrequest.timeout.ms=2000\n"
    )
    webclient = run_dir / "config" / "webclient.properties"
    webclient.write_text("idleTimeout=10000\nmaxPoolSize=100\n")
    uid = "peer-dispatch-0000-0000-0000-000000000001"
    reference = _reference(uid, "KafkaSource", "sources.knative.dev/v1")
    egress = {
        "consumerGroup": group,
        "destination": sink_url,
        "discardReply": {},
        "uid": "peer-dispatch-egress-0000-000000000001",
        "egressConfig": {"retry": 3, "backoffPolicy": "Exponential", "backoffDelay": "200"},
        "deliveryOrder": "ORDERED" if ordered else "UNORDERED",
        "keyType": "String",
        "vReplicas": 1,
        "reference": reference,
        "featureFlags": {},
    }
    contract = _write_contract(run_dir, uid, topic, bootstrap, reference=reference, egresses=[egress])
    return Process(
        "knative-dispatcher",
        [
            str(java21 / "bin" / "java"),
            "-XX:MaxRAM=1000m",
            "-XX:+CrashOnOutOfMemoryError",
            "-XX:InitialRAMPercentage=70.0",
            "-XX:MinRAMPercentage=70.0",
            "-XX:MaxRAMPercentage=70.0",
            f"-Dlogback.configurationFile={logging}",
            "-jar",
            str(jar),
        ],
        run_dir / f"dispatcher-{'ordered' if ordered else 'unordered'}.log",
        env=_knative_env(
            "kafka-source-dispatcher",
            run_dir,
            PRODUCER_CONFIG_FILE_PATH=str(producer),
            CONSUMER_CONFIG_FILE_PATH=str(consumer),
            WEBCLIENT_CONFIG_FILE_PATH=str(webclient),
            DATA_PLANE_CONFIG_FILE_PATH=str(contract),
            EGRESSES_INITIAL_CAPACITY="20",
            INSTANCE_ID="peer-dispatcher-0",
            METRICS_HOST="127.0.0.1",
        ),
    )
