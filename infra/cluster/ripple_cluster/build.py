"""Build every program the cluster runs from its Go module, incrementally (``make cluster-build``).

Why Go modules only: the machine reaches the Go module proxy but no binary download site and no
image registry, so each program is compiled here: Kubernetes and etcd through the wrapper modules
under infra/cluster/build/ (their own go.mod replace directives make ``go install`` refuse them),
the rest with plain ``go install module/cmd@version``. A step whose binaries exist is skipped;
the Go build cache lives in ``$RIPPLE_HOME/cluster/cache`` so a rebuild after ``rm bin/x`` is quick.
Builds run under ``nice -n 10``: the machine's two cores are shared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import settings as cfg
from .settings import Settings


@dataclass
class Step:
    """One build: the binaries it makes (relative to bin/) and the commands that make them."""

    name: str
    outputs: list[str]
    commands: list[list[str]]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def _version_ldflags() -> str:
    """Set the version Kubernetes reports, as its own build does (Knative refuses v0.0.0-master)."""
    v = cfg.KUBERNETES_VERSION
    major, minor = v.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=2026-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def steps(s: Settings) -> list[Step]:
    b = str(s.bin)
    src = cfg.CLUSTER_SRC
    static = {"CGO_ENABLED": "0"}
    k8s = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]
    cni = ["bridge", "loopback", "host-local", "portmap"]
    cni_pkgs = {
        "bridge": "main/bridge",
        "loopback": "main/loopback",
        "host-local": "ipam/host-local",
        "portmap": "meta/portmap",
    }
    return [
        Step(
            "kubernetes",
            k8s,
            [["go", "build", "-ldflags", _version_ldflags(), "-o", b + "/", "tool"]],
            cwd=src / "build" / "kubernetes",
        ),
        Step(
            "etcd",
            ["etcd"],
            [["go", "build", "-ldflags", "-s -w", "-o", b + "/etcd", "go.etcd.io/etcd/server/v3"]],
            cwd=src / "build" / "etcd",
            env=static,
        ),
        Step(
            "containerd",
            ["containerd", "containerd-shim-runc-v2", "ctr"],
            [
                [
                    "go",
                    "install",
                    "-tags",
                    "no_btrfs",
                    "-ldflags",
                    "-s -w",
                    f"github.com/containerd/containerd/v2/cmd/{c}@{cfg.CONTAINERD_VERSION}",
                ]
                for c in ("containerd", "containerd-shim-runc-v2", "ctr")
            ],
            env=static,
        ),
        # runc with seccomp (cgo + libseccomp-dev): Knative's pods ask for the RuntimeDefault profile,
        # which a runc built without seccomp refuses.
        Step(
            "runc",
            ["runc"],
            [
                [
                    "go",
                    "install",
                    "-tags",
                    "seccomp",
                    "-ldflags",
                    "-s -w",
                    f"github.com/opencontainers/runc@{cfg.RUNC_VERSION}",
                ]
            ],
            env={"CGO_ENABLED": "1"},
        ),
        Step(
            "cni",
            [f"cni/{p}" for p in cni],
            [
                [
                    "go",
                    "install",
                    "-ldflags",
                    "-s -w",
                    f"github.com/containernetworking/plugins/plugins/{cni_pkgs[p]}@{cfg.CNI_PLUGINS_VERSION}",
                ]
                for p in cni
            ],
            env={**static, "GOBIN": b + "/cni"},
        ),
        Step(
            "coredns",
            ["coredns"],
            [["go", "install", "-ldflags", "-s -w", f"github.com/coredns/coredns@{cfg.COREDNS_VERSION}"]],
            env=static,
        ),
        Step(
            "crane",
            ["crane"],
            [["go", "install", f"github.com/google/go-containerregistry/cmd/crane@{cfg.CRANE_VERSION}"]],
            env=static,
        ),
        Step("ko", ["ko"], [["go", "install", f"github.com/google/ko@{cfg.KO_VERSION}"]], env=static),
        Step(
            "kingress",
            ["kingress"],
            [["go", "build", "-ldflags", "-s -w", "-o", b + "/kingress", "."]],
            cwd=src / "kingress",
            env=static,
        ),
        Step(
            "images",
            ["pause", "hello", "eventlog", "brokeralias"],
            [
                [
                    "go",
                    "build",
                    "-ldflags",
                    "-s -w",
                    "-o",
                    b + "/",
                    "./pause",
                    "./hello",
                    "./eventlog",
                    "./brokeralias",
                ]
            ],
            cwd=src / "images",
            env=static,
        ),
    ]


def go_env(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOCACHE=str(s.home / "cache" / "go-build"),
        GOFLAGS="-mod=mod -buildvcs=false",
        GOBIN=str(s.bin),
        GOTOOLCHAIN="local",
    )
    return env


def build(s: Settings, only: list[str] | None = None, force: bool = False) -> int:
    if shutil.which("go") is None:
        print(
            "ripple-cluster: Go is missing: install Go 1.26+ (Kubernetes v1.36 needs it).",
            file=sys.stderr,
        )
        return 2
    s.bin.mkdir(parents=True, exist_ok=True)
    s.logs.mkdir(parents=True, exist_ok=True)
    times_file = s.home / "build-times.json"
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.exists() else {}
    total = 0.0
    for step in steps(s):
        if only and step.name not in only:
            continue
        if not force and all((s.bin / o).exists() for o in step.outputs):
            print(f"  {step.name:<11} built (skip; delete {s.bin}/{step.outputs[0]} to rebuild)")
            continue
        log = s.logs / f"build-{step.name}.log"
        print(f"  {step.name:<11} building… (log {log})", flush=True)
        env = go_env(s) | step.env
        start = time.monotonic()
        with log.open("w") as out:
            for cmd in step.commands:
                out.write("$ " + " ".join(cmd) + "\n")
                out.flush()
                rc = subprocess.call(
                    ["nice", "-n", "10", *cmd], cwd=step.cwd, env=env, stdout=out, stderr=subprocess.STDOUT
                )
                if rc != 0:
                    print(
                        f"ripple-cluster: building {step.name} failed (exit {rc}); see {log}", file=sys.stderr
                    )
                    return rc
        took = time.monotonic() - start
        total += took
        times[step.name] = round(took, 1)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        print(f"  {step.name:<11} built in {took:.0f} s")
    print(f"ripple-cluster: build done ({total:.0f} s this run; per-step times in {times_file})")
    return 0
