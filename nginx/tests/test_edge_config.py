"""The edge configuration renders and passes `nginx -t` for every profile (no server needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ripple_stack.component import PrerequisiteError
from ripple_stack.components import nginx as edge

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make prereqs)")


def local_values(run_dir: Path) -> dict[str, str]:
    return edge.local_values(
        run_dir,
        listen="127.0.0.1:18999",
        status_listen="127.0.0.1:18998",
        gateway="127.0.0.1:18081",
        query=edge.NOT_DEPLOYED_ADDRESS,
        access_log=str(run_dir / "access.log"),
    )


def test_there_are_profiles():
    assert {"strict", "burst-tolerant"} <= set(edge.profile_names())


@pytest.mark.parametrize("profile", edge.profile_names())
def test_every_profile_passes_nginx_t(profile, tmp_path):
    config = edge.write_config(tmp_path, {**edge.read_profile(profile), **local_values(tmp_path)})
    edge.check_config(config)  # raises with nginx's own message


@pytest.mark.parametrize("profile", edge.profile_names())
def test_every_profile_sets_every_limit(profile):
    """Profiles are interchangeable: each one sets exactly the template's limit variables."""
    target = set(local_values(Path("/nonexistent")))
    wanted = edge.template_variables(edge.TEMPLATE.read_text()) - target
    assert set(edge.read_profile(profile)) == wanted


def test_a_variable_without_value_is_refused():
    with pytest.raises(PrerequisiteError, match="RATE_PER_ADDRESS"):
        edge.render({}, template="limit_req_zone x zone=a:1m rate=${RATE_PER_ADDRESS};")


def test_nginx_variables_are_left_alone():
    assert edge.render({"A": "1"}, template="$host ${A} $binary_remote_addr") == "$host 1 $binary_remote_addr"


def test_unknown_profile_says_which_exist():
    with pytest.raises(PrerequisiteError, match="strict"):
        edge.selected_profile({"RIPPLE_NGINX_PROFILE": "nope"})


def test_single_values_can_be_overridden():
    name, values = edge.selected_profile(
        {"RIPPLE_NGINX_PROFILE": "burst-tolerant", "RIPPLE_NGINX_RATE_PER_ADDRESS": "7r/s"}
    )
    assert name == "burst-tolerant"
    assert values["RATE_PER_ADDRESS"] == "7r/s"
    assert values["BURST_PER_ADDRESS"] == edge.read_profile("burst-tolerant")["BURST_PER_ADDRESS"]


def test_body_limit_follows_the_gateway_manifest(tmp_path):
    manifest = tmp_path / "service.yaml"
    manifest.write_text(
        "spec:\n  template:\n    spec:\n      containers:\n        - env:\n"
        "            - {name: MAX_BODY_BYTES, value: '2048'}\n"
    )
    assert edge.gateway_max_body_bytes(manifest) == 2048
    assert edge.gateway_max_body_bytes(tmp_path / "absent.yaml") == edge.DEFAULT_MAX_BODY_BYTES


def test_cluster_configmaps_are_generated_from_nginx_dir():
    """infra/edge/generated-config.yaml is exactly what `make edge-manifests` makes of nginx/ now."""
    profile = edge.generated_profile()
    assert edge.GENERATED_CONFIG.read_text() == edge.cluster_config_manifests(profile), (
        f"{edge.GENERATED_CONFIG} is stale: run `RIPPLE_NGINX_PROFILE={profile} make edge-manifests`"
    )


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (gettext-base) is not installed")
def test_cluster_render_step_gives_the_local_renderers_result():
    """The init container's envsubst line, fed the ConfigMaps and its env, renders what render() does."""
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(edge.GENERATED_CONFIG.read_text())}
    manifests = yaml.safe_load_all((edge.EDGE_MANIFESTS_DIR / "edge.yaml").read_text())
    deployment = next(d for d in manifests if d["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    env = {**documents["ripple-edge-limits"]["data"], **{e["name"]: e["value"] for e in init["env"]}}
    formats_line = next(line for line in init["args"][0].splitlines() if line.strip().startswith("formats="))
    rendered = subprocess.run(
        ["/bin/sh", "-ec", f'{formats_line.strip()}\nenvsubst "$formats"'],
        input=documents["ripple-edge-template"]["data"]["nginx.conf.template"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered == edge.render(env)


def test_cluster_objects_fit_together():
    """What the schemas cannot see (Route has none outside a cluster): names, labels and ports agree."""
    kinds = {d["kind"]: d for d in yaml.safe_load_all((edge.EDGE_MANIFESTS_DIR / "edge.yaml").read_text())}
    pod = kinds["Deployment"]["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    service, route, monitor = kinds["Service"], kinds["Route"], kinds["PodMonitor"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert route["spec"]["to"] == {"kind": "Service", "name": service["metadata"]["name"]}
    assert route["spec"]["port"]["targetPort"] in {p["name"] for p in service["spec"]["ports"]}
    assert route["spec"]["tls"]["termination"] in {"edge", "reencrypt", "passthrough"}
    assert route["spec"]["tls"]["insecureEdgeTerminationPolicy"] in {"Allow", "Redirect", "None"}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= set(ports)
    env = {e["name"]: e["value"] for e in pod["spec"]["initContainers"][0]["env"]}
    assert env["LISTEN_ADDRESS"].rsplit(":", 1)[-1] == str(ports["http"])
    # Everything runs unprivileged (OpenShift's restricted SCC).
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]


@pytest.mark.skipif(shutil.which("mtail") is None, reason="mtail is not installed (make prereqs)")
def test_access_log_counters_read_the_log_format(tmp_path):
    """The mtail program compiles and counts lines in the format the template logs."""
    log = tmp_path / "access.log"
    log.write_text(
        '{"status":429,"request_time":0.000,"limit_req_status":"REJECTED","limit_conn_status":""}\n'
        '{"status":202,"request_time":0.012,"limit_req_status":"PASSED","limit_conn_status":"PASSED"}\n'
    )
    assert '"status":$status,' in edge.TEMPLATE.read_text()  # the program's regex relies on this order
    metrics = subprocess.run(
        ["mtail", "-one_shot", "-one_shot_format", "prometheus", f"-progs={edge.MTAIL_DIR}", f"-logs={log}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'limit_status="REJECTED",prog="edge.mtail",status="429"} 1' in metrics
    assert 'limit_status="PASSED",prog="edge.mtail",status="202"} 1' in metrics
