"""The container images, run the way the cluster runs them, against the local stack (make test-images).

Each function image starts with the command, args, env (addresses rewritten to the local stack,
secrets resolved: the local stack's own code does it), memory limit and security context of its
Knative manifest, plus --network host, --cap-drop ALL and no-new-privileges. The images are
built (or taken from the build cache) by the module's fixture, with RIPPLE_BASE_IMAGE deciding
the bases (`make test-images` sets local-debian: stand-ins built from Debian packages).
Skipped only when podman is not installed (`make podman` installs it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
import requests
import sqlalchemy as sa
import yaml
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from loadtest.measure import free_port
from ripple_delivery.build import SHARED_CONTAINERFILE, SHARED_STAGES, build_images, image_specs
from ripple_delivery.config import ImageConfig, ImageError, load_config
from ripple_delivery.podman import engine, inspect_image, podman_available
from ripple_delivery.run import (
    check_user,
    manifest_environment,
    memory_flag,
    run_arguments,
    run_like_manifest,
)
from ripple_stack.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "functions" / "gateway" / "tests"))
from gateway_testkit import ORDER_TYPE, TopicReader, binary_headers, order

# A cold build of the stand-in bases and images takes 10-15 minutes on 2 cores, inside the first
# test that needs them: more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(2400)
NEEDS_PODMAN = pytest.mark.skipif(
    not podman_available(), reason="podman (and runc) are not installed: `make podman` installs them"
)
FUNCTIONS = [spec.name for spec in image_specs(include_flink=False)]
WITH_MIGRATIONS = [name for name in FUNCTIONS if (REPO_ROOT / "functions" / name / "alembic.ini").exists()]


def manifest(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "knative" / name / "service.yaml").read_text())


def environment(stack, name: str) -> dict[str, str]:
    return manifest_environment(REPO_ROOT / "knative" / name / "service.yaml", stack.settings, stack.secrets)


# --- the checks themselves (pure logic) ------------------------------------------------------


@pytest.mark.parametrize("user", ["", "0", "root", "0:0", "root:root"])
def test_an_image_running_as_root_is_refused(user):
    with pytest.raises(ImageError, match="runs as root"):
        check_user("bad:1", user)


def test_a_named_user_is_refused_because_runasnonroot_cannot_verify_it():
    with pytest.raises(ImageError, match="non-numeric USER"):
        check_user("bad:1", "default")


@pytest.mark.parametrize("user", ["1001", "1001:0", "9999"])
def test_a_numeric_non_root_user_passes(user):
    check_user("good:1", user)


def test_memory_quantities_become_podman_values():
    assert [memory_flag(q) for q in ("512Mi", "1Gi", "256M", "1048576")] == [
        "512m",
        "1g",
        "256000000",
        "1048576",
    ]
    with pytest.raises(ImageError, match="not a quantity"):
        memory_flag("lots")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_run_arguments_follow_the_manifest(name, tmp_path):
    service = manifest(name)
    container = service["spec"]["template"]["spec"]["containers"][0]
    arguments = run_arguments(service, "img:1", name="c", port=1234, env_file=tmp_path / "env")
    joined = " ".join(arguments)
    assert "--cap-drop ALL" in joined and "--security-opt no-new-privileges" in joined
    assert "--network host" in joined and "--env PORT=1234" in joined
    assert f"--memory {memory_flag(container['resources']['limits']['memory'])}" in joined
    read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
    assert ("--read-only" in arguments) == read_only
    image_at = arguments.index("img:1")
    assert arguments[image_at + 1 :] == container.get("args", [])
    if "command" in container:
        assert json.loads(arguments[arguments.index("--entrypoint") + 1]) == container["command"]


def from_arguments(containerfile: Path) -> dict[str, str]:
    """Each FROM's build argument and that argument's default; a FROM that is no argument fails."""
    text = containerfile.read_text()
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    found = {}
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        argument = re.fullmatch(r"\$\{(\w+)\}", base)
        assert argument, (
            f"{containerfile}: FROM {base} is not a build argument (a stand-in could not replace it)"
        )
        found[argument.group(1)] = defaults.get(argument.group(1), "")
    return found


REAL_BASES = ("registry.access.redhat.com/", "docker.io/")


@pytest.mark.parametrize("spec", image_specs(), ids=lambda spec: spec.name)
def test_containerfiles_keep_the_real_bases_and_end_non_root(spec):
    """Every FROM goes through a build argument: the Flink image's default to the real (pullable)
    base, so a stand-in is only ever passed explicitly; a function's to the functions' shared
    stages (functions/Containerfile, whose own FROM defaults to the real base). The final USER is
    numeric and not root."""
    if spec.kind == "function":
        assert from_arguments(spec.containerfile) == {
            argument: f"localhost/ripple/function-{target}" for target, argument in SHARED_STAGES.items()
        }
    else:
        assert all(default.startswith(REAL_BASES) for default in from_arguments(spec.containerfile).values())
    check_user(spec.name, re.findall(r"^USER\s+(\S+)", spec.containerfile.read_text(), re.MULTILINE)[-1])


def test_the_functions_shared_stages_keep_the_real_base_and_run_non_root():
    assert all(default.startswith(REAL_BASES) for default in from_arguments(SHARED_CONTAINERFILE).values())
    text = SHARED_CONTAINERFILE.read_text()
    for target in SHARED_STAGES:
        assert re.search(rf"^FROM\s+\S+\s+AS\s+{target}$", text, re.MULTILINE), f"no stage {target!r}"
    check_user("function-run", re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)[-1])


# --- the images, built and run ------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> Iterator[tuple[ImageConfig, dict[str, str]]]:
    if not podman_available():
        pytest.skip("podman (and runc) are not installed: `make podman` installs them")
    config = load_config()
    try:
        built = build_images(config, FUNCTIONS, say=lambda line: print(line, file=sys.stderr))
    except ImageError as error:
        pytest.fail(f"building the function images failed: {error}")
    yield config, built


@contextmanager
def running(
    config: ImageConfig, name: str, image: str, env: dict[str, str], tmp_path: Path, user: str | None = None
):
    container = run_like_manifest(config, manifest(name), image, env, free_port(), tmp_path, user)
    try:
        container.wait_until_answering("/healthz")
        yield container
    finally:
        container.remove()


@contextmanager
def throwaway_database(stack) -> Iterator[str]:
    """A database of its own for one container's migrations, dropped afterwards."""
    database = f"ripple_image_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(
        host=stack.settings.host,
        port=stack.settings.ports["postgres"],
        user=stack.settings.postgres_user,
        password=stack.secrets["RIPPLE_POSTGRES_PASSWORD"],
        dbname="postgres",
    )
    admin.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database}"')
        yield database
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def database_url(stack, database: str) -> str:
    return stack.postgres_url.rsplit("/", 1)[0] + f"/{database}"


def alembic_revisions(stack, database: str) -> list[str]:
    """The revisions recorded in a database (each function has its own alembic_version_<name>)."""
    engine_ = sa.create_engine(database_url(stack, database))
    with engine_.connect() as connection:
        tables = connection.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'alembic_version%%'"
        ).scalars()
        revisions = [connection.exec_driver_sql(f'SELECT version_num FROM "{t}"').scalar() for t in tables]
    engine_.dispose()
    return [revision for revision in revisions if revision]


@contextmanager
def ready_function(stack, images, name: str, tmp_path: Path, user: str | None = None) -> Iterator[tuple]:
    """The function's image run as its manifest says (a consumer on a throwaway database of its
    own), once it answers /readyz: (container, database name)."""
    config, built = images
    env = environment(stack, name)
    with throwaway_database(stack) as database:
        env = {**env, "POSTGRES_DB": database} if "POSTGRES_DB" in env else env
        with running(config, name, built[name], env, tmp_path, user) as container:
            container.wait_until_answering("/readyz")
            yield container, database


@NEEDS_PODMAN
@pytest.mark.integration
@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_image_starts_as_its_manifest_says(stack, images, name, tmp_path):
    """Ready, non-root in group 0, no capabilities; a consumer's command migrated a fresh database."""
    with ready_function(stack, images, name, tmp_path) as (container, database):
        uid, gid = container.exec("id", "-u"), container.exec("id", "-g")
        capabilities = container.exec("grep", "CapEff", "/proc/1/status").split()[-1]
        revisions = alembic_revisions(stack, database) if name in WITH_MIGRATIONS else ["none needed"]
    assert uid != "0" and gid == "0", f"{name} runs as uid {uid} gid {gid}; expected non-root in group 0"
    assert int(capabilities, 16) == 0, f"{name} kept capabilities {capabilities}"
    assert revisions, f"{name}: the container's command did not record an Alembic revision"


@NEEDS_PODMAN
@pytest.mark.integration
@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_image_runs_under_an_arbitrary_openshift_uid(stack, images, name, tmp_path):
    """OpenShift's restricted SCC runs a random uid in group 0, not the image's 1001."""
    with ready_function(stack, images, name, tmp_path, user="1000680000:0") as (container, _):
        uid = container.exec("id", "-u")
    assert uid == "1000680000"


@NEEDS_PODMAN
@pytest.mark.integration
def test_gateway_image_accepts_an_event_into_kafka(stack, images, tmp_path):
    config, built = images
    env = environment(stack, "gateway")
    reader = TopicReader(stack.kafka_bootstrap, "ripple.shop.orders")
    with running(config, "gateway", built["gateway"], env, tmp_path) as container:
        container.wait_until_answering("/readyz")
        headers = binary_headers(stack.client_token(), ORDER_TYPE)
        answer = requests.post(container.url + "/", data=json.dumps(order()), headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text
        found = reader.records_with_ids([headers["ce-id"]])
    assert headers["ce-id"] in found


@NEEDS_PODMAN
@pytest.mark.integration
def test_event_store_image_stores_a_cloudevent(stack, images, tmp_path):
    config, built = images
    env = environment(stack, "event-store")
    event = CloudEvent(
        {
            "id": str(uuid.uuid4()),
            "source": "/test/images",
            "type": ORDER_TYPE,
            "tenant": "acme",
            "time": "2026-11-27T10:00:00Z",
            "datacontenttype": "application/json",
        },
        {"orderId": "o-image", "amount": 12.5},
    )
    headers, body = to_binary(event)
    with throwaway_database(stack) as database:
        with running(
            config, "event-store", built["event-store"], {**env, "POSTGRES_DB": database}, tmp_path
        ) as c:
            answer = requests.post(c.url + "/", headers=headers, data=body, timeout=30)
        engine_ = sa.create_engine(database_url(stack, database))
        with engine_.connect() as connection:
            stored = connection.exec_driver_sql(
                "SELECT tenant, data->>'orderId' FROM events WHERE id = %s", (event["id"],)
            ).all()
        engine_.dispose()
    assert answer.status_code < 300, answer.text
    assert stored == [("acme", "o-image")]


@NEEDS_PODMAN
@pytest.mark.integration
def test_query_image_answers_a_tenant_with_its_totals(stack, images, tmp_path):
    config, built = images
    env = environment(stack, "query")
    with throwaway_database(stack) as database:
        engine_ = sa.create_engine(database_url(stack, database))
        with engine_.begin() as connection:
            connection.exec_driver_sql((REPO_ROOT / "flink" / "sql" / "postgres-schema.sql").read_text())
            connection.exec_driver_sql(
                "INSERT INTO agg_tenant_totals"
                " (tenant, orders, order_amount, payments, payment_amount, pageviews)"
                " VALUES ('acme', 3, 75.5, 2, 50, 9), ('globex', 1, 1, 1, 1, 1)"
            )
        engine_.dispose()
        with running(
            config, "query", built["query"], {**env, "POSTGRES_DB": database}, tmp_path
        ) as container:
            container.wait_until_answering("/readyz")
            headers = {"Authorization": f"Bearer {stack.user_token('alice')}"}
            answer = requests.get(container.url + "/v1/aggregates/totals", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tenant"] == "acme"
    assert (body["totals"]["orders"], body["totals"]["pageviews"]) == (3, 9)


# The job's own statements, planned without a cluster: proves the image holds PyFlink, the job, its
# SQL and the connectors (the Kafka and JDBC table factories must load to plan the sources and sinks).
EXPLAIN_JOB = """
import os, sys
sys.path.insert(0, "/opt/flink/usrlib")
os.environ.setdefault("RIPPLE_DB_PASSWORD", "unused-for-a-plan")
import aggregates
config = aggregates.JobConfig.from_env()
tables = aggregates.build(config)
inserts = tables.create_statement_set()
for statement in aggregates.render_statements(config):
    if statement.lstrip().upper().startswith("INSERT"):
        inserts.add_insert_sql(statement)
    else:
        tables.execute_sql(statement)
print(inserts.explain())
"""


@NEEDS_PODMAN
@pytest.mark.integration
def test_flink_image_plans_the_job_with_its_connectors(tmp_path):
    config = load_config()
    try:
        image = build_images(config, ["ripple-flink"], say=lambda line: print(line, file=sys.stderr))[
            "ripple-flink"
        ]
    except ImageError as error:
        pytest.fail(f"building the Flink image failed: {error}")
    deployment = next(
        doc
        for doc in yaml.safe_load_all((REPO_ROOT / "infra" / "flink" / "flinkdeployment.yaml").read_text())
        if doc["kind"] == "FlinkDeployment"
    )
    check_user(image, inspect_image(config, image)["Config"].get("User", ""))
    run = [
        "run", "--rm", "--network", "host", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", str(deployment["spec"]["podTemplate"]["spec"]["securityContext"]["runAsUser"]),
        "--memory", deployment["spec"]["jobManager"]["resource"]["memory"],
    ]  # fmt: skip
    jars = engine(config, *run, "--entrypoint", "ls", image, "/opt/flink/lib", capture=True).stdout.split()
    for connector in (
        "flink-sql-connector-kafka",
        "flink-connector-jdbc-postgres",
        "postgresql",
        "flink-python",
    ):
        assert any(jar.startswith(connector) for jar in jars), f"{connector} is not in /opt/flink/lib: {jars}"
    planned = engine(
        config, *run, "--entrypoint", "python", image, "-c", EXPLAIN_JOB, check=False, capture=True
    )
    assert planned.returncode == 0, f"{image}: planning the job failed:\n{planned.stderr[-3000:]}"
    for table in ("agg_events_per_minute", "agg_product_sales", "agg_tenant_totals"):
        assert table in planned.stdout, f"the plan has no sink {table}"


# --- the checks catch bad images ------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_image(images) -> str:
    return images[1]["gateway"]


@NEEDS_PODMAN
@pytest.mark.integration
def test_an_image_that_runs_as_root_fails_with_that_reason(stack, images, base_image, tmp_path):
    config, _ = images
    (tmp_path / "Containerfile").write_text(f"FROM {base_image}\nUSER 0\n")
    root_image = "localhost/ripple/test-runs-as-root:1"
    engine(config, "build", "--quiet", "-t", root_image, str(tmp_path), capture=True)
    try:
        with pytest.raises(ImageError, match="runs as root"):
            run_like_manifest(config, manifest("gateway"), root_image, {}, free_port(), tmp_path)
    finally:
        engine(config, "rmi", "--force", root_image, check=False, capture=True)


@NEEDS_PODMAN
@pytest.mark.integration
def test_an_image_whose_command_fails_fails_with_its_exit_code(stack, images, base_image, tmp_path):
    config, _ = images
    broken = manifest("gateway")
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = ["/bin/sh", "-c"], ["echo cannot start >&2; exit 3"]
    started = run_like_manifest(config, broken, base_image, {}, free_port(), tmp_path)
    try:
        with pytest.raises(ImageError, match=r"command exited with 3(.|\n)*cannot start"):
            started.wait_until_answering("/healthz")
    finally:
        started.remove()


def test_the_chart_can_pin_every_image_by_digest(tmp_path):
    """build_chart.py --images-from-registry: each function and the Flink job by digest."""
    sys.path.insert(0, str(REPO_ROOT / "infra" / "helm"))
    from build_chart import assemble, pin_images

    chart = assemble(tmp_path)
    digest = "sha256:" + "ab" * 32
    references = {spec.name: f"127.0.0.1:15000/ripple/{spec.name}@{digest}" for spec in image_specs()}
    pin_images(chart, references)
    images = [
        container["image"]
        for path in (chart / "files" / "knative").glob("*/service.yaml")
        for container in yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"]
    ]
    flink_file = chart / "files" / "infra" / "flink" / "flinkdeployment.yaml"
    images += [
        doc["spec"]["image"]
        for doc in yaml.safe_load_all(flink_file.read_text())
        if doc["kind"] == "FlinkDeployment"
    ]
    assert images and all(image.endswith(f"@{digest}") for image in images), images


KN = REPO_ROOT / ".ripple" / "dist" / "bin" / "kn"


def kn_normalised(service: dict) -> dict:
    """The parts of a Service that matter, without what kn adds (timestamps, probe port 0)."""
    template = service["spec"]["template"]
    annotations = {
        key: value
        for key, value in template.get("metadata", {}).get("annotations", {}).items()
        if not key.startswith("client.knative.dev/")
    }
    spec = json.loads(json.dumps(template["spec"]))
    for container in spec["containers"]:
        container.pop("image", None)
        for probe in ("readinessProbe", "livenessProbe"):
            if container.get(probe, {}).get("httpGet", {}).get("port") == 0:
                del container[probe]["httpGet"]["port"]
    return {"labels": service["metadata"].get("labels", {}), "annotations": annotations, "spec": spec}


@pytest.mark.skipif(not KN.exists(), reason="kn is not built: `make kn` builds it from source (5-10 min)")
@pytest.mark.parametrize("name", FUNCTIONS)
def test_kn_renders_every_service_as_its_manifest(name, tmp_path):
    """`kn service create --filename … --image … --target` (no cluster) keeps the manifest's spec."""
    image = f"127.0.0.1:15000/ripple/{name}@sha256:{'cd' * 32}"
    rendered = tmp_path / f"{name}.yaml"
    create = [str(KN), "service", "create", name, "--filename", f"knative/{name}/service.yaml"]
    result = subprocess.run(
        [*create, "--image", image, "-n", "ripple", "--target", str(rendered)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(rendered.read_text())
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert kn_normalised(service) == kn_normalised(manifest(name))
