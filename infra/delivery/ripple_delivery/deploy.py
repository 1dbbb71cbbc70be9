"""Onto a cluster: `kn service create/update` lines for the pushed images, `helm upgrade
--install` of the chart, and a smoke test of the deployed gateway."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ripple_stack.settings import REPO_ROOT

from .build import image_specs
from .config import ImageConfig, ImageError


def kn_commands(config: ImageConfig) -> list[str]:
    """`kn service create/update` per function, with the references of the last push (by digest)
    or, before any push, of the last build."""
    source = config.pushed_file if config.pushed_file.exists() else config.built_file
    if not source.exists():
        raise ImageError("no images built yet: run `make images` (and `make registry push`) first.")
    references = json.loads(source.read_text())
    namespace = os.environ.get("RIPPLE_NAMESPACE", "ripple")
    lines = []
    for spec in image_specs(include_flink=False):
        if spec.name in references and (REPO_ROOT / "knative" / spec.name / "service.yaml").exists():
            image, manifest = references[spec.name], f"knative/{spec.name}/service.yaml"
            lines.append(
                f"kn service create {spec.name} --filename {manifest} --image {image} -n {namespace}"
            )
            lines.append(f"kn service update {spec.name} --image {image} -n {namespace}")
    return lines


# --- deploying (a cluster) -----------------------------------------------------------------


def require_cluster() -> None:
    if not os.environ.get("KUBECONFIG") and not (Path.home() / ".kube" / "config").exists():
        raise ImageError(
            "no cluster configured: set KUBECONFIG to a kubeconfig for the target OpenShift cluster "
            "(CI sets it from a protected variable) and rerun."
        )


def deploy(config: ImageConfig, helm: Path, production: bool) -> None:
    require_cluster()
    namespace = (
        os.environ.get("RIPPLE_PRODUCTION_NAMESPACE", "ripple-production")
        if production
        else os.environ.get("RIPPLE_NAMESPACE", "ripple")
    )
    charts = sorted((config.home / "chart").glob("ripple-*.tgz"))
    if not charts:
        raise ImageError("no packaged chart: run `make chart-registry` (or `make chart`) first.")
    command = [str(helm), "upgrade", "--install", "ripple", str(charts[-1]), "--namespace", namespace]
    command += [
        "--create-namespace",
        "--wait",
        "--timeout",
        "10m",
        "--set",
        f"image.prefix={config.registry}/{config.namespace}",
    ]
    print("+ " + " ".join(command))
    if subprocess.run(command).returncode != 0:
        raise ImageError(f"helm upgrade --install into {namespace} failed (see above).")


def smoke_deployed() -> None:
    """Against a deployed gateway: /healthz, /readyz, and (with a token) one event answered 202."""
    require_cluster()
    url = os.environ.get("RIPPLE_GATEWAY_URL", "").rstrip("/")
    if not url:
        raise ImageError("RIPPLE_GATEWAY_URL is not set: give the deployed gateway's route (https://…).")
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(url + path, timeout=10) as response:
            if response.status != 200:
                raise ImageError(f"{url}{path} answered {response.status}")
        print(f"{url}{path}: 200")
    token = os.environ.get("RIPPLE_SMOKE_TOKEN")
    if token:
        event = {
            "specversion": "1.0",
            "id": f"smoke-{time.time_ns()}",
            "source": "ripple/ci-smoke",
            "type": "shop.pageview.v1",
            "data": {"path": "/ci-smoke"},
        }
        request = urllib.request.Request(
            url + "/v1/events",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/cloudevents+json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            if response.status != 202:
                raise ImageError(f"POST {url}/v1/events answered {response.status}, expected 202")
        print(f"POST {url}/v1/events: 202")
