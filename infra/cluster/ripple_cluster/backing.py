"""Kafka, PostgreSQL and Keycloak for ripple's functions on the cluster: a second instance of each,
inside the cluster's network namespace, listening on the node IP (and the project's SMTP mail sink
for the notifier, as the local stack has one).

Why a second instance and not relays to the local stack's servers (measured, infra/cluster/README.md
"ripple on the cluster"): the cluster's ripple must never write into the local stack's topics,
tables or realm, and the local stack belongs to whoever runs ``make up``/``make test``. Separate
servers give that isolation with no extra Kafka listener on the local broker, no relay whose
advertised address has to match, and no port on the host's loopback: inside the namespace the
usual ports (9092, 5432, 8080) are free, and the pods reach the node IP through their route to
the node subnet. The programs are the very ones the local stack runs (Kafka's jars from
``$RIPPLE_HOME/dist/kafka-libs``, Debian's PostgreSQL, Keycloak's distribution, copied once into
``$RIPPLE_HOME/cluster/keycloak`` so its dev database and build are its own); their state lives
under ``$RIPPLE_HOME/cluster/backing``.

Keycloak runs with a fixed issuer, ``--hostname=http://keycloak-service.<namespace>.svc:8080``:
that is the address the pods fetch the JWKS from (the Service this module points at the node IP),
so a token fetched anywhere carries the ``iss`` the functions check. It imports the realms the
local stack imports (the production realm plus the local fixtures' clients, with this cluster's
own generated secrets): this Keycloak is test infrastructure around the cluster, not part of what
the Helm release deploys (the chart never carries fixtures).

Everything here runs inside the namespace: probes and provisioning (topics, database) run as
``nsenter --net`` children of this process, so no traffic leaves loopback or the namespace.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as random_source
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import node
from .settings import REPO, Settings, env_int

SECRET_NAMES = (
    "RIPPLE_POSTGRES_PASSWORD",
    "RIPPLE_KEYCLOAK_ADMIN_PASSWORD",
    "RIPPLE_PUBLISHER_CLIENT_SECRET",
    "RIPPLE_TEST_CLIENT_SECRET",
    "RIPPLE_TEST_USER_PASSWORD",
)


@dataclass(frozen=True)
class Backing:
    """Where the cluster's Kafka, PostgreSQL and Keycloak listen (all on the node IP)."""

    s: Settings
    namespace: str  # RIPPLE_CLUSTER_RIPPLE_NAMESPACE: the Kubernetes namespace of ripple's release
    kafka_port: int  # RIPPLE_CLUSTER_KAFKA_PORT
    kafka_controller_port: int  # RIPPLE_CLUSTER_KAFKA_CONTROLLER_PORT
    postgres_port: int  # RIPPLE_CLUSTER_POSTGRES_PORT
    keycloak_port: int  # RIPPLE_CLUSTER_KEYCLOAK_PORT
    keycloak_management_port: int  # RIPPLE_CLUSTER_KEYCLOAK_MANAGEMENT_PORT
    smtp_port: int  # RIPPLE_CLUSTER_SMTP_PORT: the mail sink (the manifests' smtp.<ns>.svc:25)

    @property
    def home(self) -> Path:
        return self.s.home / "backing"

    @property
    def ip(self) -> str:
        return self.s.node_ip

    @property
    def secrets_file(self) -> Path:
        return self.s.home / "secrets.env"

    @property
    def keycloak_issuer_base(self) -> str:
        """The Keycloak URL as the pods see it (the Service's name); tokens carry it as ``iss``."""
        return f"http://keycloak-service.{self.namespace}.svc:{self.keycloak_port}"

    @property
    def keycloak_url(self) -> str:
        """Keycloak as the node itself reaches it (inside the namespace)."""
        return f"http://{self.ip}:{self.keycloak_port}"


def load(s: Settings) -> Backing:
    return Backing(
        s=s,
        namespace=os.environ.get("RIPPLE_CLUSTER_RIPPLE_NAMESPACE") or "ripple",
        kafka_port=env_int("RIPPLE_CLUSTER_KAFKA_PORT", 9092),
        kafka_controller_port=env_int("RIPPLE_CLUSTER_KAFKA_CONTROLLER_PORT", 9093),
        postgres_port=env_int("RIPPLE_CLUSTER_POSTGRES_PORT", 5432),
        keycloak_port=env_int("RIPPLE_CLUSTER_KEYCLOAK_PORT", 8080),
        keycloak_management_port=env_int("RIPPLE_CLUSTER_KEYCLOAK_MANAGEMENT_PORT", 9000),
        smtp_port=env_int("RIPPLE_CLUSTER_SMTP_PORT", 25),
    )


# ---------------------------------------------------------------------------------------------
# secrets


def load_secrets(b: Backing) -> dict[str, str]:
    """The cluster's own secrets, generated once into ``$RIPPLE_HOME/cluster/secrets.env`` (0600).

    Never the local stack's: a leaked cluster password opens nothing of the local stack's.
    """
    stored: dict[str, str] = {}
    if b.secrets_file.exists():
        for line in b.secrets_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                stored[k.strip()] = v.strip()
    values = {n: stored.get(n) or random_source.token_urlsafe(24) for n in SECRET_NAMES}
    if values != stored:
        b.secrets_file.parent.mkdir(parents=True, exist_ok=True)
        b.secrets_file.touch(mode=0o600)
        b.secrets_file.write_text(
            "# Generated by ripple_cluster for the cluster's Kafka/PostgreSQL/Keycloak. Never commit.\n"
            + "".join(f"{n}={values[n]}\n" for n in SECRET_NAMES)
        )
    return values


# ---------------------------------------------------------------------------------------------
# the three servers


def _dist() -> Path:
    home = Path(os.environ.get("RIPPLE_HOME") or REPO / ".ripple")
    return home if home.is_absolute() else REPO / home


def kafka_libs() -> Path:
    return _dist() / "dist" / "kafka-libs"


def keycloak_source() -> Path:
    return next((_dist() / "dist" / "keycloak").glob("keycloak-*"), _dist() / "dist" / "keycloak" / "missing")


POSTGRES_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin/postgres"),
    key=lambda p: int(p.parts[-3]),
    default=Path("/usr/lib/postgresql/15/bin/postgres"),
).parent


def _require(b: Backing) -> None:
    missing = []
    if not any(kafka_libs().glob("kafka_*.jar")):
        missing.append(f"Kafka's jars in {kafka_libs()}")
    if not (keycloak_source() / "bin" / "kc.sh").exists():
        missing.append(f"Keycloak's distribution in {keycloak_source().parent}")
    if not (POSTGRES_BIN / "postgres").exists():
        missing.append("Debian's postgresql package")
    if shutil.which("java") is None:
        missing.append("java (a JDK 17)")
    if missing:
        raise SystemExit(
            "ripple-cluster: the cluster's Kafka/PostgreSQL/Keycloak use the local stack's downloads; "
            f"missing: {', '.join(missing)}. Run `make up` once (it installs them), then retry."
        )


def _reachable_by(path: Path) -> None:
    """Let the postgres account traverse the folders above its data directory (o+x)."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _kafka_config(b: Backing) -> Path:
    conf = b.home / "kafka" / "server.properties"
    conf.parent.mkdir(parents=True, exist_ok=True)
    # The local stack's KRaft configuration (infra/kafka/server.properties), on the node IP: the
    # pods reach it, the bootstrap Service resolves to it and Kafka hands it out in its metadata.
    text = (
        (REPO / "infra" / "kafka" / "server.properties")
        .read_text()
        .format(
            host=b.ip,
            port=b.kafka_port,
            controller_port=b.kafka_controller_port,
            log_dirs=b.home / "kafka" / "data",
        )
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return conf


def _kafka_java(b: Backing, main: str, *args: str) -> list[str]:
    return ["java", "-Xms128m", "-Xmx512m", "-cp", f"{kafka_libs()}/*", main, *args]


def _prepare(b: Backing, secrets: dict[str, str]) -> None:
    b.home.mkdir(parents=True, exist_ok=True)
    # Kafka: format its storage once.
    conf = _kafka_config(b)
    if not (b.home / "kafka" / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            _kafka_java(
                b, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(conf)
            ),
            check=True,
            capture_output=True,
        )
    # PostgreSQL: a cluster of its own, owned by Debian's postgres account.
    data = b.home / "postgres"
    sockets = b.home / "postgres-run"
    sockets.mkdir(parents=True, exist_ok=True)
    shutil.chown(sockets, "postgres")
    _reachable_by(b.home)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postgres")
        pwfile = b.home / "initdb-password"
        pwfile.write_text(secrets["RIPPLE_POSTGRES_PASSWORD"] + "\n")
        shutil.chown(pwfile, "postgres")
        try:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(POSTGRES_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "ripple",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (data / "pg_hba.conf").open("a") as hba:
            # Pods (any address of the namespace's networks) with a password.
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    # Keycloak: its own copy of the distribution (own dev database, own build).
    kc = b.home / "keycloak"
    if not (kc / "bin" / "kc.sh").exists():
        shutil.copytree(keycloak_source(), kc, symlinks=True, ignore=shutil.ignore_patterns("data"))
    imports = kc / "data" / "import"
    imports.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "infra" / "local"))
    from ripple_stack.components.keycloak import local_realms

    for name, realm in local_realms().items():
        (imports / f"{name}-realm.json").write_text(json.dumps(realm, indent=2))


def _postgres_parameters() -> list[str]:
    """infra/postgres/cluster.yaml's spec.postgresql.parameters as `-c name=value` arguments: the
    backing server runs with what CloudNativePG's would (max_connections for the functions' pools)."""
    import yaml

    for document in yaml.safe_load_all((REPO / "infra" / "postgres" / "cluster.yaml").read_text()):
        if isinstance(document, dict) and document.get("kind") == "Cluster":
            parameters = (document.get("spec", {}).get("postgresql") or {}).get("parameters") or {}
            return [arg for name, value in parameters.items() for arg in ("-c", f"{name}={value}")]
    return []


def procs(b: Backing, secrets: dict[str, str]) -> list[node.Proc]:
    ip = b.ip
    return [
        node.Proc("backing-kafka", _kafka_java(b, "kafka.Kafka", str(_kafka_config(b)))),
        node.Proc(
            "backing-postgres",
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(b.home / "postgres"),
                "-p",
                str(b.postgres_port),
                "-c",
                f"listen_addresses={ip}",
                "-c",
                f"unix_socket_directories={b.home / 'postgres-run'}",
                *_postgres_parameters(),
            ],
        ),
        # The notifier's mail goes here (python -m ripple_stack.mailsink, as locally): one .eml
        # file per message under backing/mail.
        node.Proc(
            "backing-mail-sink",
            [
                sys.executable,
                "-m",
                "ripple_stack.mailsink",
                "--host",
                ip,
                "--port",
                str(b.smtp_port),
                "--metrics-port",
                "9025",
                "--dir",
                str(b.home / "mail"),
            ],
        ),
        node.Proc(
            "backing-keycloak",
            [
                str(b.home / "keycloak" / "bin" / "kc.sh"),
                "start-dev",
                f"--http-host={ip}",
                f"--http-port={b.keycloak_port}",
                f"--http-management-host={ip}",
                f"--http-management-port={b.keycloak_management_port}",
                # A fixed issuer: the address the pods use (the Service keycloak-service).
                f"--hostname={b.keycloak_issuer_base}",
                "--health-enabled=true",
                "--metrics-enabled=true",
                "--import-realm",
            ],
            env={
                "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
                "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
                "KC_BOOTSTRAP_ADMIN_PASSWORD": secrets["RIPPLE_KEYCLOAK_ADMIN_PASSWORD"],
                **{n: secrets[n] for n in SECRET_NAMES[2:]},
            },
        ),
    ]


NAMES = ("backing-kafka", "backing-postgres", "backing-keycloak", "backing-mail-sink")


# ---------------------------------------------------------------------------------------------
# inside the namespace: probes and provisioning


def ns_python(s: Settings, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the project's Python inside the cluster's network namespace."""
    return subprocess.run(
        node.in_ns(s, sys.executable, "-c", code), text=True, capture_output=True, timeout=timeout
    )


def _tcp_open(s: Settings, host: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({host!r}, {port}), 2).close()"
    return ns_python(s, code, 10).returncode == 0


def _http_ok(s: Settings, url: str) -> bool:
    code = f"import urllib.request as u; u.urlopen({url!r}, timeout=3).read()"
    return ns_python(s, code, 10).returncode == 0


PROVISION = """
import sys, yaml, psycopg2
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
ip, kport, pport, password, manifest = sys.argv[1:6]
admin = KafkaAdminClient(bootstrap_servers=f"{ip}:{kport}", client_id="ripple-cluster")
existing = set(admin.list_topics())
wanted = []
for doc in yaml.safe_load_all(open(manifest)):
    if doc and doc.get("kind") == "KafkaTopic":
        spec = doc.get("spec", {})
        name = spec.get("topicName") or doc["metadata"]["name"]
        if name not in existing:
            cfg = {k: str(v) for k, v in (spec.get("config") or {}).items()}
            wanted.append(NewTopic(name, int(spec.get("partitions", 1)), 1, topic_configs=cfg))
if wanted:
    admin.create_topics(wanted)
admin.close()
c = psycopg2.connect(host=ip, port=int(pport), user="ripple", password=password, dbname="postgres")
c.autocommit = True
cur = c.cursor()
cur.execute("SELECT 1 FROM pg_database WHERE datname = 'ripple'")
if cur.fetchone() is None:
    cur.execute('CREATE DATABASE "ripple"')
c.close()
print(len(wanted))
"""


def up(s: Settings) -> Backing:
    """Start the three servers inside the namespace (idempotent), wait for them, create the
    declared topics (infra/kafka/topics.yaml) and the database ``ripple``."""
    b = load(s)
    _require(b)
    secrets = load_secrets(b)
    if not node.netns_exists(s):
        raise SystemExit("ripple-cluster: the cluster is not up; run `make cluster-up` first")
    _prepare(b, secrets)
    for p in procs(b, secrets):
        node.start(s, p)
    # Every 2 s: each probe is a python started inside the namespace.
    for what, port, timeout, log in (
        ("PostgreSQL", b.postgres_port, 60, "backing-postgres.log"),
        ("Kafka", b.kafka_port, 120, "backing-kafka.log"),
        ("mail sink", b.smtp_port, 30, "backing-mail-sink.log"),
    ):
        node.wait_ready(
            f"the cluster's {what}", partial(_tcp_open, s, b.ip, port), timeout, s.logs / log, every=2
        )
    argv = [
        b.ip,
        str(b.kafka_port),
        str(b.postgres_port),
        secrets["RIPPLE_POSTGRES_PASSWORD"],
        str(REPO / "infra" / "kafka" / "topics.yaml"),
    ]
    code = f"import sys; sys.argv = ['p', *{argv!r}]; exec({PROVISION!r})"
    for _attempt in range(10):
        r = ns_python(s, code, 60)
        if r.returncode == 0:
            break
        time.sleep(3)
    else:
        raise SystemExit(f"ripple-cluster: creating topics/database failed: {r.stderr.strip()[-800:]}")
    node.wait_ready(
        "the cluster's Keycloak",
        lambda: _http_ok(s, f"{b.keycloak_url}/realms/ripple/.well-known/openid-configuration"),
        300,
        s.logs / "backing-keycloak.log",
        every=2,
    )
    return b


def start_if_deployed(s: Settings) -> None:
    """Start the servers without waiting when they were set up before (``cluster-up`` calls this
    right after the namespace exists: a restarted node's ripple pods find them, instead of
    crash-looping until the next ``cluster-deploy``)."""
    b = load(s)
    if not (b.home / "postgres" / "PG_VERSION").exists() or not (b.home / "keycloak" / "bin").exists():
        return
    secrets = load_secrets(b)
    for p in procs(b, secrets):
        node.start(s, p)


def down(s: Settings) -> None:
    """Stop the three servers (PostgreSQL first with SIGINT: its fast shutdown)."""
    import contextlib
    import signal

    pid = node.pid_of(s, "backing-postgres")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGINT)
    node.stop_many(s, list(NAMES), timeout=30)
