"""A Flink session cluster (one JobManager, one TaskManager) from the apache-flink PyPI package.

The PyPI package ships the Flink distribution (bin/, lib/, opt/, plugins/) inside `pyflink/`, but
no connectors. `make up` installs it into its own virtualenv (apache-flink pins numpy, protobuf and
apache-beam versions that must not meet the functions' dependencies), resolves the connector jars
of flink/pom.xml from Maven Central, and assembles a lib directory from both — the same thing a
Flink image for the Kubernetes operator does with `COPY *.jar /opt/flink/lib/`.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from knative_standins.pod_cpu import PodCpu

from ..component import (
    Component,
    PrerequisiteError,
    Program,
    Say,
    ScrapeTarget,
    declared_cpu,
    manifest_document,
    maven_fetch,
    python_program,
    run,
)
from ..settings import REPO_ROOT, Settings

POM = REPO_ROOT / "flink" / "pom.xml"
REQUIREMENTS = REPO_ROOT / "flink" / "requirements.txt"
DEPLOYMENT_MANIFEST = REPO_ROOT / "infra" / "flink" / "flinkdeployment.yaml"


def flink_cpu(role: str) -> PodCpu:
    """The `jobManager` or `taskManager` pod's CPU of the FlinkDeployment: the operator requests
    `resource.cpu` and limits it to that times `kubernetes.<role>.cpu.limit-factor` (Flink's
    KubernetesConfigOptions, default 1.0: the limit is the request)."""
    where = f"{DEPLOYMENT_MANIFEST} spec.{role}.resource.cpu"
    spec = manifest_document(DEPLOYMENT_MANIFEST, "FlinkDeployment").get("spec") or {}
    cpu = ((spec.get(role) or {}).get("resource") or {}).get("cpu")
    if cpu is None:
        raise PrerequisiteError(f"{where} is missing: restore {DEPLOYMENT_MANIFEST} from git.")
    factor_key = f"kubernetes.{role.lower()}.cpu.limit-factor"
    factor = (spec.get("flinkConfiguration") or {}).get(factor_key, "1.0")
    try:
        limit_factor = float(factor)
    except (TypeError, ValueError):
        limit_factor = 0.0
    if limit_factor < 1.0:
        raise PrerequisiteError(
            f"{DEPLOYMENT_MANIFEST} flinkConfiguration {factor_key} is {factor!r}: give a number"
            " of at least 1.0 (the limit over the request)."
        )
    request_milli = declared_cpu({"requests": {"cpu": cpu}}, where).request_milli
    return PodCpu(request_milli, round(request_milli * limit_factor))


class Flink(Component):
    # Its after_ready submits the job, which needs PostgreSQL's tables and Kafka's topics.
    start_tier = 1
    name = "flink"
    description = "Flink session cluster"

    # --- where things are -------------------------------------------------------------------

    def venv(self, settings: Settings) -> Path:
        return settings.dist_dir / "flink-venv"

    def python(self, settings: Settings) -> Path:
        return self.venv(settings) / "bin" / "python"

    def distribution(self, settings: Settings) -> Path:
        """The Flink distribution inside the installed pyflink package."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.venv(settings) / "lib" / f"python{version}" / "site-packages" / "pyflink"

    def connectors_dir(self, settings: Settings) -> Path:
        return settings.dist_dir / "flink-connectors"

    def lib_dir(self, settings: Settings) -> Path:
        return settings.dist_dir / "flink-lib"

    def conf_dir(self, settings: Settings) -> Path:
        return settings.run_dir / "flink-conf"

    def cli(self, settings: Settings) -> Path:
        """bin/flink of the distribution: submits, lists, cancels and stops jobs."""
        return self.distribution(settings) / "bin" / "flink"

    def cli_env(self, settings: Settings) -> dict[str, str]:
        """Environment for bin/flink so it talks to this cluster with its jars."""
        return {
            "FLINK_CONF_DIR": str(self.conf_dir(settings)),
            "FLINK_LIB_DIR": str(self.lib_dir(settings)),
            "FLINK_LOG_DIR": str(settings.log_dir),
            "PATH": f"{self.venv(settings) / 'bin'}:/usr/bin:/bin",
        }

    # --- install and configure ----------------------------------------------------------------

    def install(self, settings: Settings, say: Say) -> None:
        self._install_python_package(settings, say)
        maven_fetch(POM, self.connectors_dir(settings), say, "the Flink connectors")
        self._assemble_lib(settings)

    def _install_python_package(self, settings: Settings, say: Say) -> None:
        # Same rule as maven_fetch: the requirements file is the pin, stamped after success.
        stamp = self.venv(settings) / ".requirements-stamp"
        wanted = REQUIREMENTS.read_text()
        if stamp.exists() and stamp.read_text() == wanted:
            return
        say("installing apache-flink from PyPI into its own virtualenv (once, ~800 MB)…")
        if self.venv(settings).exists():
            shutil.rmtree(self.venv(settings))
        run([sys.executable, "-m", "venv", str(self.venv(settings))])
        pip = [str(self.python(settings)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run([*pip, "pip==25.3"])
        run([*pip, "-r", str(REQUIREMENTS)])
        stamp.write_text(wanted)

    def _assemble_lib(self, settings: Settings) -> None:
        lib = self.lib_dir(settings)
        if lib.exists():
            shutil.rmtree(lib)
        lib.mkdir(parents=True)
        distribution = self.distribution(settings)
        jars = [
            *(distribution / "lib").glob("*.jar"),
            # Python jobs on a session cluster need flink-python on every process's classpath.
            *(distribution / "opt").glob("flink-python-*.jar"),
            *self.connectors_dir(settings).glob("*.jar"),
        ]
        for jar in jars:
            (lib / jar.name).symlink_to(jar)

    def configuration(self, settings: Settings) -> dict:
        """config.yaml: the shipped defaults (JVM flags for Java 17) plus this stack's settings."""
        shipped = yaml.safe_load((self.distribution(settings) / "conf" / "config.yaml").read_text())
        host = settings.host
        state = self.data_dir(settings)
        python = str(self.python(settings))
        reporter = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        ours = {
            "jobmanager.bind-host": host,
            "jobmanager.rpc.address": host,
            "jobmanager.rpc.port": settings.ports["flink_rpc"],
            "jobmanager.memory.process.size": "1024m",
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.bind-host": host,
            "taskmanager.host": host,
            # Python UDF workers live outside the JVM; managed memory is what they get.
            "taskmanager.memory.process.size": "2048m",
            "taskmanager.numberOfTaskSlots": 4,
            "parallelism.default": 1,
            "rest.address": host,
            "rest.bind-address": host,
            "rest.port": settings.ports["flink_rest"],
            "state.backend.type": "hashmap",
            "execution.checkpointing.dir": f"file://{state / 'checkpoints'}",
            "execution.checkpointing.savepoint-dir": f"file://{state / 'savepoints'}",
            # Keep the last checkpoints when a job is cancelled or the JobManager dies: they are
            # what the job restarts from (the local stand-in for Kubernetes HA).
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "execution.checkpointing.num-retained": 3,
            "restart-strategy.type": "exponential-delay",
            "restart-strategy.exponential-delay.initial-backoff": "1 s",
            "restart-strategy.exponential-delay.max-backoff": "30 s",
            "python.executable": python,
            "python.client.executable": python,
            "metrics.reporter.prom.factory.class": reporter,
            "web.submit.enable": True,
        }
        flat = _flatten(shipped)
        flat.update(ours)
        return flat

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        conf = self.conf_dir(settings)
        conf.mkdir(parents=True, exist_ok=True)
        self.data_dir(settings).mkdir(parents=True, exist_ok=True)
        (conf / "config.yaml").write_text(yaml.safe_dump(self.configuration(settings), sort_keys=True))
        shipped_conf = self.distribution(settings) / "conf"
        for name in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties"):
            shutil.copy(shipped_conf / name, conf / name)

    # --- run ----------------------------------------------------------------------------------

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        bin_dir = self.distribution(settings) / "bin"
        env = {**self.cli_env(settings), "JAVA_HOME": _java_home()}

        def daemon(script: str, metrics_port: str) -> list[str]:
            return [
                str(bin_dir / script),
                "start-foreground",
                "-D",
                f"metrics.reporter.prom.port={settings.ports[metrics_port]}",
            ]

        return [
            Program(
                name="flink-jobmanager",
                command=daemon("jobmanager.sh", "flink_jobmanager_metrics"),
                cpu=flink_cpu("jobManager"),
                env=env,
                stop_wait_s=30,
            ),
            Program(
                name="flink-taskmanager",
                command=daemon("taskmanager.sh", "flink_taskmanager_metrics"),
                cpu=flink_cpu("taskManager"),
                env=env,
                stop_wait_s=30,
            ),
            # No HA service locally: this keeper resubmits the job from its newest checkpoint
            # when a restarted JobManager has forgotten it (see flink_job.watch).
            python_program("flink-job-keeper", "ripple_stack", "flink", "watch", stop_wait_s=10),
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        try:
            overview = rest_get(settings, "/overview")
        except OSError as error:
            return f"JobManager REST not answering ({type(error).__name__})"
        if overview.get("taskmanagers", 0) < 1:
            return "no TaskManager registered yet"
        return None

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        # The aggregation job: submitted when not running, resumed from its newest checkpoint.
        from ..flink_job import ensure_running  # here: flink_job imports this module

        ensure_running(settings, secrets, say)

    def address(self, settings: Settings) -> str:
        return settings.flink_rest_url

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [
            ScrapeTarget("flink", f"{settings.host}:{settings.ports['flink_jobmanager_metrics']}"),
            ScrapeTarget("flink", f"{settings.host}:{settings.ports['flink_taskmanager_metrics']}"),
        ]


def rest_get(settings: Settings, path: str, timeout: float = 5.0) -> dict:
    """GET a JSON document from the JobManager's REST API."""
    try:
        with urllib.request.urlopen(settings.flink_rest_url + path, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise OSError(f"Flink REST {path} answered {error.code}") from error


def _flatten(tree: Mapping, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _java_home() -> str:
    """JAVA_HOME of the `java` on PATH (Flink's scripts prefer it to guessing)."""
    java = shutil.which("java")
    if java is None:
        return ""
    return str(Path(java).resolve().parents[1])
