"""ripple's KafkaSources on the real cluster: the stand-in dispatcher as a Knative ContainerSource.

knative.dev/eventing-kafka-broker (KafkaSource's controller and Java data plane) is not served by
the Go module proxy, so a ``knative/<name>/kafkasource.yaml`` cannot run as a real KafkaSource
here. Instead each one becomes a ``sources.knative.dev/v1`` **ContainerSource** whose container is
ripple's own KafkaSource dispatcher (``infra/local/knative_standins/kafkasource``, the code the
local stack runs) reading that same manifest, unchanged, from a ConfigMap. Real Eventing then does
what it does for any source: the ContainerSource controller makes a SinkBinding, the SinkBinding
resolves ``spec.sink`` (the KafkaSource's sink, copied) through the Addressable's
``status.address`` and injects it as ``K_SINK``; the dispatcher sends there (``K_SINK`` wins over
the local address table). Not resolved by Eventing: the dead-letter sink (a ContainerSource has
one sink); it is given as the Knative Service's cluster-local address, which is what the resolver
would return for a ``serving.knative.dev/v1`` Service (``http://<name>.<namespace>.svc.cluster.local``).

**The image** is built the way ripple's function images are (``infra/delivery``: podman on the
same Python base, the stand-in of UBI python-311 on these machines, multi-stage, pinned
requirements, root-owned compiled code, user 1001) rather than with ko-like layering: the
dispatcher is Python with compiled wheels (uvloop, httptools, crc32c), so it needs a Python
userland that the static Go base does not have, and the project already makes one.
``infra/cluster/images/kafkasource/`` holds its Containerfile and requirements; the build context
is staged under ``$RIPPLE_HOME/cluster/images/kafkasource-context`` (the repository's
``.dockerignore`` admits only ``functions/`` and ``flink/``), tagged with a hash of that context,
pushed to the cluster's registry and referenced by digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import images
from .addons import restricted_security_context
from .settings import CLUSTER_SRC, REPO, Settings

IMAGE_SRC = CLUSTER_SRC / "images" / "kafkasource"
IMAGE_NAME = "ripple/kafkasource-dispatcher"
METRICS_PORT = 18500
MANIFEST_PATH = "/etc/ripple/kafkasource.yaml"
# The functions' packages the stand-ins import (copied beside knative_standins into the image).
FUNCTION_PACKAGES = ("ripple_cloudevents", "ripple_settings")


def _podman_config():
    """ripple_delivery's podman configuration (storage and settings under $RIPPLE_HOME/containers),
    on the stand-in Python base unless RIPPLE_BASE_IMAGE says otherwise."""
    from ripple_delivery.config import load_config

    env = dict(os.environ)
    env.setdefault("RIPPLE_BASE_IMAGE", "local-debian")
    return load_config(env)


def stage_context(s: Settings) -> tuple[Path, str]:
    """Copy what the image needs into a fresh build context; return it and its content hash."""
    ctx = s.home / "images" / "kafkasource-context"
    if ctx.exists():
        shutil.rmtree(ctx)
    ignore = shutil.ignore_patterns("tests", "__pycache__", "*.pyc")
    shutil.copytree(REPO / "infra" / "local" / "knative_standins", ctx / "knative_standins", ignore=ignore)
    for package in FUNCTION_PACKAGES:
        shutil.copytree(REPO / "functions" / package, ctx / package, ignore=ignore)
    _check_imports(ctx)
    for name in ("Containerfile", "requirements.txt"):
        shutil.copy2(IMAGE_SRC / name, ctx / name)
    digest = hashlib.sha256()
    for path in sorted(p for p in ctx.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(ctx)).encode() + b"\0" + path.read_bytes() + b"\0")
    return ctx, digest.hexdigest()[:12]


def _check_imports(ctx: Path) -> None:
    """Import the dispatcher from the staged context alone (``python -S``: no .pth files, so the
    repository's editable install cannot hide a first-party package the image would lack), with
    the project's venv supplying the third-party packages only."""
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path[:0] = [{str(ctx)!r}, {site!r}]; import knative_standins.kafkasource.__main__"
    )
    r = subprocess.run([sys.executable, "-S", "-c", code], text=True, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(
            "ripple-cluster: the dispatcher does not import from its image's build context "
            f"(a package missing from FUNCTION_PACKAGES in sources.py?):\n{r.stderr.strip()[-800:]}"
        )


def build_image(s: Settings) -> str:
    """Build (podman) and push the dispatcher's image; return it by digest. Cached by content."""
    from ripple_delivery.bases import ensure_python_stand_in
    from ripple_delivery.podman import engine, image_exists

    ctx, tag = stage_context(s)
    remote = f"{s.registry}/{IMAGE_NAME}:{tag}"
    if images.exists(s, remote):
        return f"{s.registry}/{IMAGE_NAME}@{images.crane(s, 'digest', remote)}"
    config = _podman_config()
    local = f"localhost/{IMAGE_NAME}:{tag}"
    start = time.monotonic()
    if not image_exists(config, local):
        command = ["build", "--network", "host", "-f", str(ctx / "Containerfile"), "-t", local]
        if config.stand_in:
            command += ["--build-arg", f"BASE_IMAGE={ensure_python_stand_in(config)}"]
        if config.ca_bundle and Path(config.ca_bundle).exists():
            # pip behind the build machine's TLS proxy; a build-time mount, not part of the image.
            command += ["-v", f"{config.ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
        print(f"  sources     building {local} with podman…", flush=True)
        engine(config, *command, str(ctx), stdout=subprocess.DEVNULL)
    archive = s.home / "images" / "kafkasource-dispatcher.tar"
    archive.unlink(missing_ok=True)
    engine(config, "save", "--format", "docker-archive", "-o", str(archive), local, capture=True)
    # crane pushes to the registry on its host-side relay (podman would need registries.conf edits).
    r = subprocess.run(["nice", "-n", "19", str(s.bin / "crane"), "push", str(archive), remote],
                       text=True, capture_output=True)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: crane push {remote} failed: {r.stderr.strip()[-800:]}")
    archive.unlink(missing_ok=True)
    print(f"  sources     dispatcher image built and pushed in {time.monotonic() - start:.0f} s", flush=True)
    return f"{s.registry}/{IMAGE_NAME}@{images.crane(s, 'digest', remote)}"


def service_url(name: str, namespace: str) -> str:
    """What Knative's Addressable resolver returns for a serving.knative.dev/v1 Service."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def container_source(
    manifest: dict[str, Any],
    image: str,
    *,
    services: dict[str, str] | None = None,
    cluster_addresses: dict[str, str] | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """The ConfigMap and ContainerSource that run one KafkaSource manifest.

    ``services`` maps Knative Service names to URLs for refs the dispatcher resolves itself (the
    dead-letter sink); by default every Service ref of the manifest other than the sink gets its
    cluster-local address. ``cluster_addresses`` rewrites bootstrap servers (host:port=host:port).
    """
    meta = manifest["metadata"]
    spec = manifest["spec"]
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    namespace = meta.get("namespace", "default")
    name = name or f"kafkasource-{meta['name']}"
    if services is None:
        services = {}
        dls = (spec.get("delivery") or {}).get("deadLetterSink") or {}
        ref = dls.get("ref")
        if ref and ref.get("kind") == "Service":
            services[ref["name"]] = service_url(ref["name"], ref.get("namespace", namespace))
    env = [
        {
            "name": "RIPPLE_KNATIVE_SERVICES",
            "value": ",".join(f"{k}={v}" for k, v in sorted(services.items())),
        },
        {"name": "RIPPLE_DISPATCHER_METRICS_PORT", "value": str(METRICS_PORT)},
        # Members of consumerGroup: a rolling Deployment runs the old and the new pod at once.
        {"name": "RIPPLE_DISPATCHER_ASSIGNMENT", "value": "group"},
        # The manifest's hash, in the pod spec: Eventing's ContainerSource reconciler rolls its
        # Deployment only when the pod *spec* changes (podSpecChanged), not its annotations, and
        # a new ConfigMap alone restarts nothing.
        {"name": "RIPPLE_MANIFEST_SHA256", "value": hashlib.sha256(text.encode()).hexdigest()},
    ]
    if cluster_addresses:
        pairs = ",".join(f"{k}={v}" for k, v in sorted(cluster_addresses.items()))
        env.append({"name": "RIPPLE_CLUSTER_ADDRESSES", "value": pairs})
    labels = {"ripple.dev/kafkasource": meta["name"]}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"kafkasource.yaml": text},
    }
    source = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ContainerSource",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "sink": spec["sink"],
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "dispatcher",
                            "image": image,
                            "args": [MANIFEST_PATH],
                            "env": env,
                            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/metrics", "port": METRICS_PORT},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "96Mi"},
                                "limits": {"memory": "384Mi"},
                            },
                            "securityContext": restricted_security_context(),
                            "volumeMounts": [
                                {"name": "manifest", "mountPath": str(Path(MANIFEST_PATH).parent)}
                            ],
                        }
                    ],
                    # One dispatcher per manifest (`consumers` is not honoured); during a rollout
                    # the old and the new pod share the partitions through the consumerGroup.
                    "volumes": [{"name": "manifest", "configMap": {"name": name}}],
                },
            },
        },
    }
    return [configmap, source]


def ripple_kafkasources() -> list[Path]:
    return sorted((REPO / "knative").glob("*/kafkasource*.yaml"))


def apply(s: Settings, manifest: dict[str, Any], image: str | None = None, **kwargs: Any) -> str:
    """Apply the ConfigMap and ContainerSource of one KafkaSource manifest (building the image when
    none is given); returns the ContainerSource's name."""
    from .eventing import apply_docs

    docs = container_source(manifest, image or build_image(s), **kwargs)
    r = apply_docs(s, docs)
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: applying {docs[1]['metadata']['name']} failed: {r.stderr.strip()}")
    return docs[1]["metadata"]["name"]
