"""nginx from the Debian package: ripple's edge, rendered from nginx/ (template + limit profile).

The same template and profile files feed the cluster (infra/edge/generated-config.yaml, written by
`make edge-manifests`), so there is no second copy to keep in step.
Settings of the edge, read here and only here:

    RIPPLE_NGINX_PROFILE        limit profile, a file nginx/profiles/<name>.env (default: strict)
    RIPPLE_NGINX_<NAME>         overrides one value of the profile, e.g. RIPPLE_NGINX_RATE_PER_ADDRESS=80r/s
    RIPPLE_NGINX_QUERY_FUNCTION knative/<name>/service.yaml routed under /query/ (default: query)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    http_status,
    let_reach,
    manifest_document,
    require_binary,
    require_file,
    run,
    running_as_root,
)
from ..settings import REPO_ROOT, Settings

NGINX_DIR = REPO_ROOT / "nginx"
TEMPLATE = NGINX_DIR / "nginx.conf.template"
NJS_SCRIPT = NGINX_DIR / "edge.js"
# mtail programs turning the JSON access log into per-status counters (429 rates).
MTAIL_DIR = NGINX_DIR / "mtail"
PROFILES_DIR = NGINX_DIR / "profiles"
GATEWAY_MANIFEST = REPO_ROOT / "knative" / "gateway" / "service.yaml"
EDGE_MANIFEST = REPO_ROOT / "infra" / "edge" / "edge.yaml"
DEFAULT_PROFILE = "strict"
# The gateway's own default (contract): used while its manifest does not set MAX_BODY_BYTES.
DEFAULT_MAX_BODY_BYTES = 1048576
# Debian's libnginx-mod-http-js; the cluster image has it at modules/ under its prefix.
DEBIAN_NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
# Debian's nginx package creates this account; workers drop to it when the stack runs as root.
WORKER_USER = "www-data"
# Nothing listens on port 1: an upstream that is not deployed answers 502 problem+json.
NOT_DEPLOYED_ADDRESS = "127.0.0.1:1"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
ENV_PREFIX = "RIPPLE_NGINX_"


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.env"))


def read_profile(name: str) -> dict[str, str]:
    """KEY=VALUE lines of nginx/profiles/<name>.env (comments and blank lines ignored)."""
    path = PROFILES_DIR / f"{name}.env"
    if not path.is_file():
        raise PrerequisiteError(
            f"There is no nginx profile {name!r} (RIPPLE_NGINX_PROFILE): choose one of "
            f"{', '.join(profile_names())}."
        )
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key.strip()):
            raise PrerequisiteError(f"{path}:{number}: expected NAME=value, found {line!r}.")
        values[key.strip()] = value.strip()
    return values


def selected_profile(environ: Mapping[str, str] = os.environ) -> tuple[str, dict[str, str]]:
    """The profile RIPPLE_NGINX_PROFILE names, with RIPPLE_NGINX_<NAME> overrides applied."""
    name = environ.get(f"{ENV_PREFIX}PROFILE") or DEFAULT_PROFILE
    values = read_profile(name)
    for key in values:
        override = environ.get(f"{ENV_PREFIX}{key}")
        if override:
            values[key] = override
    return name, values


def edge_cpu(manifest: Path = EDGE_MANIFEST) -> PodCpu:
    """The edge pod's CPU (infra/edge/edge.yaml): its containers' requests summed, as kubelet sizes
    the pod's cgroup; limited only when every container is."""
    containers = manifest_document(manifest, "Deployment")["spec"]["template"]["spec"]["containers"]
    cpus = [declared_cpu(c.get("resources"), f"{manifest} container {c.get('name')}") for c in containers]
    limits = [cpu.limit_milli for cpu in cpus]
    limit = None if None in limits else sum(limit for limit in limits if limit)
    return PodCpu(sum(cpu.request_milli for cpu in cpus), limit)


def gateway_max_body_bytes(manifest: Path = GATEWAY_MANIFEST) -> int:
    """MAX_BODY_BYTES of the gateway's Knative Service: nginx refuses larger bodies first."""
    if not manifest.is_file():
        return DEFAULT_MAX_BODY_BYTES
    document = yaml.safe_load(manifest.read_text())
    try:
        env = document["spec"]["template"]["spec"]["containers"][0].get("env", [])
    except (KeyError, IndexError, TypeError):
        return DEFAULT_MAX_BODY_BYTES
    for item in env:
        if item.get("name") == "MAX_BODY_BYTES" and "value" in item:
            try:
                return int(item["value"])
            except ValueError:
                raise PrerequisiteError(
                    f"{manifest}: MAX_BODY_BYTES={item['value']!r} is not a number of bytes."
                ) from None
    return DEFAULT_MAX_BODY_BYTES


def template_variables(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """The template with every ${NAME} replaced; a name without a value is an error, not a blank."""
    text = TEMPLATE.read_text() if template is None else template
    missing = sorted(template_variables(text) - set(values))
    if missing:
        raise PrerequisiteError(
            f"nginx template variables without a value: {', '.join(missing)}: add them to every "
            f"profile in {PROFILES_DIR} (or to the target values in {__file__})."
        )
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)


def local_values(
    run_dir: Path,
    *,
    listen: str,
    status_listen: str,
    gateway: str,
    query: str,
    access_log: str,
    trusted_proxies: str = "unix:",
) -> dict[str, str]:
    """Values of a local nginx (everything but the profile): paths, addresses, body limit."""
    return {
        "NJS_MODULE": DEBIAN_NJS_MODULE,
        "WORKER_PROCESSES": "auto",
        "RUN_DIR": str(run_dir),
        "CONFIG_DIR": str(run_dir),
        "ACCESS_LOG": access_log,
        "LISTEN_ADDRESS": listen,
        "STATUS_LISTEN_ADDRESS": status_listen,
        "GATEWAY_ADDRESS": gateway,
        "GATEWAY_HOST": gateway,
        "QUERY_ADDRESS": query,
        "QUERY_HOST": query,
        "TRUSTED_PROXIES": trusted_proxies,
        "CLIENT_MAX_BODY_SIZE": str(gateway_max_body_bytes()),
    }


def write_config(run_dir: Path, values: Mapping[str, str]) -> Path:
    """Render nginx.conf (and copy edge.js) into run_dir; returns the config file.

    Used by the stack's nginx and by tests and benchmarks that run a private nginx instance.
    """
    for temp in TEMP_DIRS:
        (run_dir / temp).mkdir(parents=True, exist_ok=True)
        if running_as_root():
            shutil.chown(run_dir / temp, WORKER_USER)
    config = render(values)
    if running_as_root():
        config = f"user {WORKER_USER};\n" + config
    # Files are rewritten only when their content changes: their mtime tells the running nginx's
    # component whether it has loaded them (see Nginx.after_ready).
    _write_if_changed(run_dir / NJS_SCRIPT.name, NJS_SCRIPT.read_text())
    path = run_dir / "nginx.conf"
    _write_if_changed(path, config)
    return path


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def nginx_command(config: Path) -> list[str]:
    return ["nginx", "-p", str(config.parent), "-c", str(config), "-e", "stderr"]


def check_config(config: Path) -> None:
    """`nginx -t` on a rendered config; raises with nginx's own message when it is wrong."""
    run([*nginx_command(config), "-t", "-q"])


@contextmanager
def private_edge(
    profile: str,
    *,
    gateway: str,
    listen: str,
    status_listen: str,
    overrides: Mapping[str, str] | None = None,
    trusted_proxies: str = "unix:",
) -> Iterator[Path]:
    """A separate nginx with this template and a profile (plus overrides), for tests and benchmarks.

    Yields its run directory (nginx.conf, access.log, error.log); stopped and removed afterwards.
    The directory is world-traversable because the workers run as www-data when root starts them.
    """
    run_dir = Path(tempfile.mkdtemp(prefix=f"ripple-edge-{profile}-"))
    run_dir.chmod(0o755)
    values = {
        **read_profile(profile),
        **(overrides or {}),
        **local_values(
            run_dir,
            listen=listen,
            status_listen=status_listen,
            gateway=gateway,
            query=NOT_DEPLOYED_ADDRESS,
            access_log=str(run_dir / "access.log"),
            trusted_proxies=trusted_proxies,
        ),
    }
    config = write_config(run_dir, values)
    check_config(config)
    with (run_dir / "error.log").open("wb") as errors:
        process = subprocess.Popen(
            [*nginx_command(config), "-g", "daemon off;"], stdout=errors, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while http_status(f"http://{listen}/nginx-health", timeout=1) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise PrerequisiteError(
                    f"private nginx did not start: {(run_dir / 'error.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield run_dir
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(run_dir, ignore_errors=True)


def query_address(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """Local address of the function routed under /query/, if it is declared in knative/."""
    from .functions import knative_functions

    wanted = environ.get(f"{ENV_PREFIX}QUERY_FUNCTION") or "query"
    for function in knative_functions():
        if function.name == wanted:
            return f"{settings.host}:{function.port(settings)}"
    return NOT_DEPLOYED_ADDRESS


class Nginx(Component):
    name = "nginx"
    description = "nginx edge"

    def config_file(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "nginx.conf"

    def install(self, settings: Settings, say: Say) -> None:
        require_binary("nginx", "nginx")
        require_binary("prometheus-nginx-exporter", "prometheus-nginx-exporter")
        require_binary("mtail", "mtail")
        require_file(Path(DEBIAN_NJS_MODULE), "libnginx-mod-http-js", "nginx's JavaScript module")

    def values(self, settings: Settings) -> dict[str, str]:
        _, profile = selected_profile()
        return {
            **profile,
            **local_values(
                self.run_dir(settings),
                listen=f"{settings.host}:{settings.ports['nginx']}",
                status_listen=f"{settings.host}:{settings.ports['nginx_status']}",
                gateway=f"{settings.host}:{settings.ports['gateway']}",
                query=query_address(settings),
                access_log=str(settings.log_dir / "nginx-access.log"),
            ),
        }

    def loaded_stamp(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "reloaded.stamp"

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        write_config(self.run_dir(settings), self.values(settings))
        # Workers run as www-data and buffer large bodies in the temp folders.
        let_reach(WORKER_USER, settings, *(self.run_dir(settings) / temp for temp in TEMP_DIRS))
        check_config(self.config_file(settings))

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        # `make up` leaves a running nginx alone and `start` does not prepare: render again here
        # (both wait for readiness) and reload when the files are newer than what nginx loaded,
        # i.e. newer than its start (pid file) and its last reload (stamp).
        self.prepare(settings, {}, say)
        run_dir = self.run_dir(settings)
        written = max((run_dir / name).stat().st_mtime for name in ("nginx.conf", NJS_SCRIPT.name))
        pid_file, stamp = run_dir / "nginx.pid", self.loaded_stamp(settings)
        loaded = max((path.stat().st_mtime for path in (pid_file, stamp) if path.exists()), default=0.0)
        if written > loaded:
            run([*nginx_command(self.config_file(settings)), "-s", "reload"])
            stamp.touch()
            say("nginx: configuration changed, reloaded")

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        status = f"http://{settings.host}:{settings.ports['nginx_status']}/stub_status"
        edge = edge_cpu()
        return [
            # QUIT lets workers finish the requests they hold.
            Program(
                name="nginx",
                command=[*nginx_command(self.config_file(settings)), "-g", "daemon off;"],
                stop_signal="QUIT",
                cpu=edge,
                pod="edge",
            ),
            Program(
                name="nginx-exporter",
                cpu=edge,
                pod="edge",
                command=[
                    "prometheus-nginx-exporter",
                    f"-nginx.scrape-uri={status}",
                    f"-web.listen-address={settings.host}:{settings.ports['nginx_exporter']}",
                    # It starts with nginx: wait for stub_status instead of exiting.
                    "-nginx.retries=30",
                    "-nginx.retry-interval=1s",
                ],
            ),
            # stub_status has no per-status counts: mtail reads them from the JSON access log.
            Program(
                name="nginx-log-exporter",
                command=[
                    "mtail",
                    f"-progs={MTAIL_DIR}",
                    f"-logs={settings.log_dir / 'nginx-access.log'}",
                    f"-address={settings.host}",
                    f"-port={settings.ports['nginx_log_exporter']}",
                    "-logtostderr",
                ],
            ),
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        if http_status(f"{settings.nginx_url}/nginx-health") != 200:
            return "not answering"
        for exporter in ("nginx_exporter", "nginx_log_exporter"):
            if http_status(f"http://{settings.host}:{settings.ports[exporter]}/metrics") != 200:
                return f"{exporter.replace('_', '-')} not answering"
        return None

    def address(self, settings: Settings) -> str:
        return settings.nginx_url

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [
            ScrapeTarget("nginx", f"{settings.host}:{settings.ports['nginx_exporter']}"),
            ScrapeTarget("nginx-log", f"{settings.host}:{settings.ports['nginx_log_exporter']}"),
        ]


# --- The cluster's copy: ConfigMaps generated from the same files -------------------------------

EDGE_MANIFESTS_DIR = REPO_ROOT / "infra" / "edge"
GENERATED_CONFIG = EDGE_MANIFESTS_DIR / "generated-config.yaml"
CLUSTER_NAMESPACE = "ripple"
GENERATED_HEADER = (
    "# GENERATED by `make edge-manifests` from nginx/nginx.conf.template, nginx/edge.js and\n"
    "# nginx/profiles/{profile}.env (+ MAX_BODY_BYTES of knative/gateway/service.yaml).\n"
    "# Do not edit: change those files and regenerate (RIPPLE_NGINX_PROFILE=<name> make edge-manifests);\n"
    "# nginx/tests/test_edge_config.py fails when this file is stale.\n"
)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as | blocks, so the ConfigMap shows the template as it is in nginx/."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_text)


def cluster_config_manifests(profile: str) -> str:
    """ConfigMaps of the edge: the template + njs script, and the limit values of one profile.

    The Deployment (infra/edge/edge.yaml) renders the template from these in an init container
    with envsubst and `nginx -t`, exactly as the local component does with render().
    """
    limits = {**read_profile(profile), "CLIENT_MAX_BODY_SIZE": str(gateway_max_body_bytes())}
    labels = {"app.kubernetes.io/part-of": "ripple", "app.kubernetes.io/component": "edge"}
    documents = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ripple-edge-template", "namespace": CLUSTER_NAMESPACE, "labels": labels},
            "data": {TEMPLATE.name: TEMPLATE.read_text(), NJS_SCRIPT.name: NJS_SCRIPT.read_text()},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "ripple-edge-limits",
                "namespace": CLUSTER_NAMESPACE,
                "labels": labels,
                "annotations": {"ripple.dev/nginx-profile": profile},
            },
            "data": limits,
        },
    ]
    body = yaml.dump_all(documents, Dumper=_LiteralDumper, sort_keys=False, width=1000)
    return GENERATED_HEADER.format(profile=profile) + body


def generated_profile(path: Path = GENERATED_CONFIG) -> str:
    """The profile the committed ConfigMaps were generated from."""
    for document in yaml.safe_load_all(path.read_text()):
        annotations = (document or {}).get("metadata", {}).get("annotations", {})
        if "ripple.dev/nginx-profile" in annotations:
            return annotations["ripple.dev/nginx-profile"]
    raise PrerequisiteError(f"{path} names no profile: regenerate it with `make edge-manifests`.")


def write_cluster_config(profile: str | None = None) -> Path:
    """`make edge-manifests`: write infra/edge/generated-config.yaml for RIPPLE_NGINX_PROFILE."""
    chosen = profile or os.environ.get(f"{ENV_PREFIX}PROFILE") or DEFAULT_PROFILE
    GENERATED_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    GENERATED_CONFIG.write_text(cluster_config_manifests(chosen))
    print(f"wrote {GENERATED_CONFIG.relative_to(REPO_ROOT)} (profile {chosen})")
    return GENERATED_CONFIG
