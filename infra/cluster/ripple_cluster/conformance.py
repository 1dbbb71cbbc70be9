"""knative.dev/networking's ingress conformance suite against ripple's KIngress.

``make cluster-conformance``.

The suite (``test/conformance/ingress`` of the knative.dev/networking version Serving requires)
is compiled into a test binary from ``infra/cluster/kingress/conformance`` (build tag
``conformance``); its six test images (runtime, httpproxy, timeout, wsserver, grpc-ping, retry)
are built with ko onto the project's base and pushed to the cluster's registry. The binary runs
inside the cluster's network namespace, since the Ingresses' load balancer is the node IP there,
with the inner admin kubeconfig. Beta and alpha tests are enabled; ``tls`` and ``httpoption`` are
skipped by default (no TLS listener; pass ``--skip-tests=`` to run them and see them fail). The
result table is printed and the full log kept in ``logs/conformance.log``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from . import addons
from .build import go_env
from .settings import CLUSTER_SRC, Settings

IMAGES = ["runtime", "httpproxy", "timeout", "wsserver", "grpc-ping", "retry"]
REPO = "knative-test"


def build(s: Settings) -> None:
    src = CLUSTER_SRC / "kingress"
    env = go_env(s) | {"CGO_ENABLED": "0"}
    binary = s.bin / "kingress-conformance.test"
    if not binary.exists():
        print("  conformance building the test binary…", flush=True)
        cmd = ["go", "test", "-c", "-tags", "conformance", "-o", str(binary), "./conformance"]
        subprocess.run(["nice", "-n", "10", *cmd], cwd=src, env=env, check=True)
    print("  conformance building the test images with ko…", flush=True)
    ko_env = env | {
        "KO_DOCKER_REPO": f"{s.registry}/{REPO}",
        "KO_DEFAULTBASEIMAGE": f"{s.registry}/ripple/static:latest",
        "KOCACHE": str(s.home / "cache" / "ko"),
    }
    pkgs = [f"knative.dev/networking/test/test_images/{i}" for i in IMAGES]
    with (s.logs / "ko-conformance-images.log").open("w") as log:
        cmd = [str(s.bin / "ko"), "build", "-B", "--platform=linux/amd64", "-t", "latest", *pkgs]
        subprocess.run(["nice", "-n", "10", *cmd], cwd=src, env=ko_env, check=True, stdout=log, stderr=log)


# Not implemented by the KIngress (no TLS listener): skipped unless other flags are given.
DEFAULT_FLAGS = ["--skip-tests=tls,httpoption"]


def run(s: Settings, extra: list[str]) -> int:
    extra = extra or DEFAULT_FLAGS
    build(s)
    addons.kubectl(s, "create", "namespace", "serving-tests", check=False)
    log = s.logs / "conformance.log"
    cmd = [
        "nsenter", f"--net=/run/netns/{s.netns}", "--",
        str(s.bin / "kingress-conformance.test"), "-test.v", "-test.timeout", "20m", "-test.parallel", "4",
        "--kubeconfig", str(s.home / "conf" / "admin.kubeconfig"),
        "--ingressClass", s.ingress_class,
        "--dockerrepo", f"{s.registry}/{REPO}", "--tag", "latest",
        "--enable-beta", "--enable-alpha", *extra,
    ]  # fmt: skip
    print(f"  conformance running (log {log})…", flush=True)
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.call(cmd, cwd=s.home, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    results = sorted(
        set(re.findall(r"^    --- (PASS|FAIL|SKIP): TestIngressConformance/(\S+)", log.read_text(), re.M))
    )
    for verdict, name in sorted(results, key=lambda r: r[1]):
        print(f"  {verdict}  {name}")
    passed = sum(1 for v, _ in results if v == "PASS")
    took = time.monotonic() - start
    print(f"ripple-cluster: conformance {passed}/{len(results)} passed in {took:.0f} s (exit {rc})")
    return rc
