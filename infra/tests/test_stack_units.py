"""Pure logic of the local stack runner: settings, supervisor config, manifest wiring."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from knative_standins.pod_cpu import PodCpu
from ripple_stack.component import UNDECLARED_CPU, PrerequisiteError, Program, let_reach, require_file
from ripple_stack.components import all_components, flink
from ripple_stack.components.functions import KnativeFunction, ManifestError
from ripple_stack.components.kafka import declared_topics, server_properties
from ripple_stack.components.postgres import server_parameters
from ripple_stack.components.prometheus import scrape_config
from ripple_stack.secrets import load_secrets
from ripple_stack.settings import SECRET_NAMES, ConfigError, Settings, load_settings
from ripple_stack.supervisor import JOIN_POD, render_config


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path / "home"))
    return load_settings()


def test_ports_come_from_the_environment(monkeypatch, settings):
    monkeypatch.setenv("RIPPLE_KAFKA_PORT", "29092")
    assert load_settings().kafka_bootstrap == "127.0.0.1:29092"


@pytest.mark.parametrize(
    ("value", "message"),
    [("kafka", "is not a port number"), ("80", "out of range"), ("15432", "configured twice")],
)
def test_bad_port_is_a_clear_error(monkeypatch, settings, value, message):
    monkeypatch.setenv("RIPPLE_KAFKA_PORT", value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secrets_are_generated_once_and_private(settings, monkeypatch):
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    first = load_secrets(settings)
    assert set(first) == set(SECRET_NAMES) and all(len(v) >= 24 for v in first.values())
    assert settings.secrets_file.stat().st_mode & 0o077 == 0
    assert load_secrets(settings) == first
    monkeypatch.setenv("RIPPLE_TEST_USER_PASSWORD", "from-env")
    assert load_secrets(settings)["RIPPLE_TEST_USER_PASSWORD"] == "from-env"


def test_supervisor_config_escapes_percent_and_groups_programs(settings):
    program = Program(name="flink-taskmanager", command=["sh", "-c", "echo a b"], env={"X": "50%"})
    config = render_config(settings, {"flink": [program]})
    assert "[group:flink]\nprograms=flink-taskmanager" in config
    assert 'environment=X="50%%"' in config
    assert "command=sh -c 'echo a b'" in config


def test_a_program_with_a_pod_cgroup_joins_it_before_it_runs(settings, tmp_path):
    program = Program(name="kafka", command=["kafka-server", "--config", "a b"])
    procs = tmp_path / "ripple" / "kafka" / "cgroup.procs"
    config = render_config(settings, {"kafka": [program]}, cgroups={"kafka": procs})
    (line,) = [line for line in config.splitlines() if line.startswith("command=")]
    # sh writes its own pid ($$) to $0, then execs the program with its arguments unchanged.
    assert shlex.split(line.removeprefix("command=")) == ["sh", "-c", JOIN_POD, str(procs), *program.command]
    procs.parent.mkdir(parents=True)
    procs.touch()
    result = subprocess.run(["sh", "-c", JOIN_POD, str(procs), "sh", "-c", 'echo "$$ $1"', "-", "x y"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    pid, argument = result.stdout.split(" ", 1)
    assert procs.read_text().strip() == pid and argument.strip() == "x y"


def write_service(tmp_path: Path, env: list[dict]) -> Path:
    manifest = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "demo"},
        "spec": {"template": {"spec": {"containers": [{"image": "demo", "command": ["run"], "env": env}]}}},
    }
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_service_env_gets_local_addresses_and_secrets(tmp_path, settings):
    path = write_service(
        tmp_path,
        [
            {"name": "KAFKA", "value": "ripple-kafka-bootstrap.ripple.svc:9092"},
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "ripple", "key": "RIPPLE_POSTGRES_PASSWORD"}},
            },
        ],
    )
    env = KnativeFunction(path, 0).environment(settings, {"RIPPLE_POSTGRES_PASSWORD": "pw"})
    assert env == {"KAFKA": settings.kafka_bootstrap, "PASSWORD": "pw"}


def test_service_env_with_unknown_secret_names_the_file(tmp_path, settings):
    path = write_service(
        tmp_path, [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "NOPE"}}}]
    )
    with pytest.raises(ManifestError, match=r"service.yaml.*env\[0\].*NOPE"):
        KnativeFunction(path, 0).environment(settings, {})


def test_declared_topics_read_strimzi_manifests(tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text(
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata: {name: a-b}\n"
        "spec: {topicName: a.b, partitions: 6, config: {retention.ms: 1000}}\n---\n"
        "kind: ConfigMap\nmetadata: {name: ignored}\n"
    )
    assert declared_topics(path) == [{"name": "a.b", "partitions": 6, "config": {"retention.ms": "1000"}}]


@pytest.mark.skipif(os.geteuid() != 0, reason="servers switch to their own accounts only when run as root")
def test_kafka_server_properties_fill_every_placeholder_once():
    """The template the local stack and the cluster's backing Kafka share: no key twice, no {hole} left."""
    text = server_properties("10.0.0.1", 9092, 9093, Path("/data/kafka"))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    keys = [line.split("=", 1)[0] for line in lines]
    assert "{" not in text and len(keys) == len(set(keys))
    assert "listeners=PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093" in lines
    assert "log.dirs=/data/kafka" in lines


def test_a_missing_package_file_says_which_package_to_install(tmp_path):
    require_file(tmp_path, "postgresql", "PostgreSQL")  # there: nothing to say
    with pytest.raises(
        PrerequisiteError, match=r"PostgreSQL is missing: run `sudo apt-get install postgresql`"
    ):
        require_file(tmp_path / "postgres", "postgresql", "PostgreSQL")


def test_an_account_that_cannot_enter_a_folder_above_the_checkout_is_a_clear_error(tmp_path):
    # A `mktemp -d` folder is 0700: postgres cannot pass it to reach its data under RIPPLE_HOME.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    home = private / "checkout" / ".ripple"
    (home / "data" / "postgres").mkdir(parents=True)
    settings = Settings(home=home, ports={})
    with pytest.raises(PrerequisiteError, match=f"cannot enter {private} .*chmod o\\+x {private}"):
        let_reach("postgres", settings, home / "data" / "postgres")
    assert (home / "data").stat().st_mode & 0o001, "inside RIPPLE_HOME ripple opens the way itself"


def test_prometheus_reads_the_activators_every_2_s_as_the_cluster_demo_does(settings, tmp_path):
    targets = [t for c in all_components() for t in c.scrape_targets(settings)]
    config = scrape_config(targets, tmp_path / "rules")
    intervals = {job["job_name"]: job.get("scrape_interval") for job in config["scrape_configs"]}
    assert intervals["serving"] == "2s"
    # Everything else, the functions' own metrics included, at the global 5 s.
    assert {job for job, interval in intervals.items() if interval is not None} == {"serving"}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool comes with the Debian prometheus package: run `make prereqs`")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    checked = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_programs_weigh_what_their_cluster_manifests_request(settings):
    secrets = {name: "x" for name in SECRET_NAMES}
    pods: dict[str, set[PodCpu]] = {}
    for component in all_components():
        for program in component.programs(settings, secrets):
            pods.setdefault(program.pod_name, set()).add(program.cpu)
    assert all(len(cpus) == 1 for cpus in pods.values()), "a pod's programs disagree on its CPU"
    cpu = {pod: cpus.pop() for pod, cpus in pods.items()}
    assert cpu["kafka"] == PodCpu(500)  # infra/kafka/cluster.yaml
    assert cpu["postgres"] == PodCpu(500)  # infra/postgres/cluster.yaml
    assert cpu["rabbitmq"] == PodCpu(500, 1000)  # infra/rabbitmq/cluster.yaml
    # resource.cpu x kubernetes.<role>.cpu.limit-factor (infra/flink/flinkdeployment.yaml)
    assert cpu["flink-taskmanager"] == cpu["flink-jobmanager"] == PodCpu(250, 1000)
    assert cpu["edge"] == PodCpu(510)  # nginx 500m + exporter 10m; nginx's container has no limit
    # One pod for every function's activator: 300m, plus a queue-proxy's 25m per possible instance.
    max_scales = {
        "gateway": 10,
        "event-store": 5,
        "order-alerts": 5,
        "notifier": 4,
        "query": 5,
        "dead-letters": 5,
    }
    assert cpu["activator"] == PodCpu(300 + 25 * sum(max_scales.values()))
    assert cpu["kafka-source-dispatcher"] == PodCpu(1000, 2000)  # one pod for every KafkaSource
    assert cpu["trigger-notifier"] == PodCpu(250, 1000)  # knative/notifications/triggers.yaml
    assert cpu["broker-notifications"] == PodCpu(500, 1000)  # knative/notifications/broker.yaml
    assert cpu["prometheus"] == UNDECLARED_CPU
    # The functions' instances get theirs from knative/<name>/service.yaml, through the activator.
    spec = {c.name: c.spec(settings, secrets) for c in all_components() if isinstance(c, KnativeFunction)}
    assert (spec["event-store"].cpu_request_milli, spec["event-store"].cpu_limit_milli) == (250, 1000)
    assert (spec["notifier"].cpu_request_milli, spec["notifier"].cpu_limit_milli) == (250, 1000)
    assert (spec["gateway"].cpu_request_milli, spec["gateway"].cpu_limit_milli) == (1000, None)


@pytest.mark.parametrize(
    ("factor", "limit"), [(None, PodCpu(500, 500)), ("2", PodCpu(500, 1000)), ("0.5", None), ("x", None)]
)
def test_flink_pods_limit_their_request_times_the_limit_factor(tmp_path, monkeypatch, factor, limit):
    manifest = tmp_path / "flinkdeployment.yaml"
    configuration = {} if factor is None else {"kubernetes.taskmanager.cpu.limit-factor": factor}
    manifest.write_text(
        yaml.safe_dump(
            {
                "kind": "FlinkDeployment",
                "spec": {"flinkConfiguration": configuration, "taskManager": {"resource": {"cpu": 0.5}}},
            }
        )
    )
    monkeypatch.setattr(flink, "DEPLOYMENT_MANIFEST", manifest)
    if limit is None:
        with pytest.raises(PrerequisiteError, match="limit-factor"):
            flink.flink_cpu("taskManager")
    else:
        assert flink.flink_cpu("taskManager") == limit


@pytest.mark.parametrize(
    ("spec", "arguments"),
    [
        ({"postgresql": {"parameters": {"max_connections": "250"}}}, ["-c", "max_connections=250"]),
        (
            {"postgresql": {"parameters": {"max_connections": "250", "work_mem": "8MB"}}},
            ["-c", "max_connections=250", "-c", "work_mem=8MB"],
        ),
        ({"postgresql": {}}, []),
        ({}, []),
    ],
)
def test_the_local_postgres_runs_with_the_cluster_manifests_parameters(tmp_path, spec, arguments):
    manifest = tmp_path / "cluster.yaml"
    manifest.write_text(yaml.safe_dump({"kind": "Cluster", "spec": spec}))
    assert server_parameters(manifest) == arguments
