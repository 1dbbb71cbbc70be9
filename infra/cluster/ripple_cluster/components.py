"""The cluster's processes, their configuration files and their start order.

Flags follow what ``hack/local-up-cluster.sh`` in k8s.io/kubernetes does for host processes, cut to
one node: etcd and the control plane on the namespace's loopback, the apiserver advertising the
node IP (an address inside the namespace, never the host's), kubelet and containerd with the
cgroupfs driver (cgroup v1, no systemd) and ``failCgroupV1: false`` (kubelet 1.35+ refuses cgroup v1
otherwise), kube-proxy in iptables mode inside the namespace.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import yaml

from . import pki
from .node import Proc, Relay
from .settings import Settings

API_INNER = "127.0.0.1:6443"
# The KIngress's private (cluster-local) listener, and the Service that leads pods to it: Serving
# points cluster-local route names at it (ExternalName), as it does with Kourier's internal gateway.
KINGRESS_PRIVATE_PORT = 8081
KINGRESS_PRIVATE_DOMAIN = "kingress-private.knative-serving.svc.cluster.local"


def _write(path: Path, text: str) -> Path:
    """Write only when the content changes: kube-proxy exits when its configuration file is touched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def kubeconfigs(s: Settings) -> None:
    """Inner kubeconfigs (apiserver on the namespace's loopback) and the host's (through the relay)."""
    conf = s.home / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for client in ("controller-manager", "scheduler", "kube-proxy", "kubelet", "kingress", "admin"):
        pki.kubeconfig(s, conf / f"{client}.kubeconfig", client, f"https://{API_INNER}")
    pki.kubeconfig(s, s.kubeconfig, "admin", f"https://127.0.0.1:{s.api_port}")


def relays(s: Settings) -> list[Relay]:
    return [
        Relay("api", s.api_port, API_INNER),
        Relay("ingress", s.ingress_port, f"{s.node_ip}:80"),
        Relay("registry", s.registry_port, f"127.0.0.1:{s.registry_port}"),
    ]


def containerd_config(s: Settings) -> Path:
    h, b = s.home, s.bin
    hosts = h / "containerd" / "certs.d" / s.registry / "hosts.toml"
    _write(
        hosts,
        f'server = "http://{s.registry}"\n\n[host."http://{s.registry}"]\n'
        f'  capabilities = ["pull", "resolve"]\n',
    )
    return _write(
        h / "conf" / "containerd.toml",
        f"""\
version = 3
root = "{h}/containerd/root"
state = "{h}/containerd/state"
temp = "{h}/containerd/tmp"

[grpc]
  address = "{s.run}/containerd.sock"

[ttrpc]
  address = "{s.run}/containerd.sock.ttrpc"

[plugins]
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{s.registry}/ripple/pause:latest"
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = "{h}/containerd/certs.d"
  [plugins."io.containerd.cri.v1.runtime"]
    # root here lacks CAP_SYS_RESOURCE: kubelet's negative oom_score_adj for sandboxes and
    # Guaranteed pods would fail in runc; clamp them to containerd's own instead.
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{b}/cni"]
      conf_dir = "{h}/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = "{b}/runc"
          SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.internal.v1.opt"]
    path = "{h}/containerd/opt"
""",
    )


def cni_config(s: Settings) -> Path:
    conf = {
        "cniVersion": "1.0.0",
        "name": "ripple",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": s.pod_cidr, "gateway": s.pod_gateway}]],
                    # Pods get routes to the Services and the node only, no default route.
                    "routes": [
                        {"dst": s.service_cidr},
                        {"dst": str(ipaddress.ip_network(f"{s.node_ip}/24", strict=False))},
                    ],
                    "dataDir": str(s.home / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return _write(s.home / "cni" / "net.d" / "10-ripple.conflist", json.dumps(conf, indent=2))


def kubelet_config(s: Settings) -> Path:
    d = s.pki
    conf = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{s.run}/containerd.sock",
        "address": s.node_ip,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "tlsCertFile": str(d / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(d / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(d / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [s.cluster_dns],
        "clusterDomain": "cluster.local",
        "resolvConf": str(
            _write(s.home / "conf" / "resolv.conf", "# no upstream: the cluster has no route out\n")
        ),
        "podLogsDir": str(s.home / "pod-logs"),
        "serializeImagePulls": False,
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "maxPods": 60,
        "protectKernelDefaults": False,
    }
    return _write(s.home / "conf" / "kubelet.yaml", yaml.safe_dump(conf))


def kube_proxy_config(s: Settings) -> Path:
    conf = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(s.home / "conf" / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": s.pod_cidr,
        "hostnameOverride": s.node_name,
        "bindAddress": s.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Pod -> Service -> pod on the same bridge: masquerade so replies come back through the node.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        # Conntrack sysctls are not writable from inside a network namespace: leave them alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return _write(s.home / "conf" / "kube-proxy.yaml", yaml.safe_dump(conf))


def processes(s: Settings) -> list[list[Proc]]:
    """The processes in start order, grouped in waves (a wave waits for the previous to be ready)."""
    b, d, h, conf = s.bin, s.pki, s.home, s.home / "conf"
    relay_procs = [p for r in relays(s) for p in r.procs(s)]
    registry = Proc(
        "registry",
        [
            str(b / "crane"),
            "registry",
            "serve",
            "--address",
            f"127.0.0.1:{s.registry_port}",
            "--disk",
            str(h / "registry"),
        ],
    )
    etcd = Proc(
        "etcd",
        [
            str(b / "etcd"),
            "--name",
            "ripple",
            "--data-dir",
            str(h / "etcd"),
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "ripple=http://127.0.0.1:2380",
            "--listen-metrics-urls",
            "http://127.0.0.1:2381",
            "--quota-backend-bytes",
            str(2 * 1024**3),
            "--log-level",
            "warn",
        ],
    )
    apiserver = Proc(
        "kube-apiserver",
        [
            str(b / "kube-apiserver"),
            "--etcd-servers",
            "http://127.0.0.1:2379",
            "--advertise-address",
            s.node_ip,
            "--bind-address",
            "0.0.0.0",
            "--secure-port",
            "6443",
            "--service-cluster-ip-range",
            s.service_cidr,
            "--tls-cert-file",
            str(d / "apiserver.crt"),
            "--tls-private-key-file",
            str(d / "apiserver.key"),
            "--client-ca-file",
            str(d / "ca.crt"),
            "--kubelet-client-certificate",
            str(d / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key",
            str(d / "apiserver-kubelet-client.key"),
            # Reach kubelet by the node IP: resolving the node's name would ask the host's DNS
            # servers, which the namespace has no route to.
            "--kubelet-preferred-address-types",
            "InternalIP",
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file",
            str(d / "sa.pub"),
            "--service-account-signing-key-file",
            str(d / "sa.key"),
            "--authorization-mode",
            "Node,RBAC",
            "--allow-privileged=true",
            "--enable-admission-plugins",
            "NodeRestriction",
            "--profiling=false",
            "--v=1",
        ],
    )
    controller_manager = Proc(
        "kube-controller-manager",
        [
            str(b / "kube-controller-manager"),
            "--kubeconfig",
            str(conf / "controller-manager.kubeconfig"),
            "--authentication-kubeconfig",
            str(conf / "controller-manager.kubeconfig"),
            "--authorization-kubeconfig",
            str(conf / "controller-manager.kubeconfig"),
            "--service-account-private-key-file",
            str(d / "sa.key"),
            "--root-ca-file",
            str(d / "ca.crt"),
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--service-cluster-ip-range",
            s.service_cidr,
            "--profiling=false",
            "--v=1",
        ],
    )
    scheduler = Proc(
        "kube-scheduler",
        [
            str(b / "kube-scheduler"),
            "--kubeconfig",
            str(conf / "scheduler.kubeconfig"),
            "--authentication-kubeconfig",
            str(conf / "scheduler.kubeconfig"),
            "--authorization-kubeconfig",
            str(conf / "scheduler.kubeconfig"),
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--profiling=false",
            "--v=1",
        ],
    )
    containerd = Proc("containerd", [str(b / "containerd"), "--config", str(conf / "containerd.toml")])
    kubelet = Proc(
        "kubelet",
        [
            str(b / "kubelet"),
            "--config",
            str(conf / "kubelet.yaml"),
            "--kubeconfig",
            str(conf / "kubelet.kubeconfig"),
            "--root-dir",
            str(h / "kubelet"),
            "--hostname-override",
            s.node_name,
            "--node-ip",
            s.node_ip,
            "--v=1",
        ],
    )
    kube_proxy = Proc(
        "kube-proxy", [str(b / "kube-proxy"), "--config", str(conf / "kube-proxy.yaml"), "--v=1"]
    )
    kingress = Proc(
        "kingress",
        [str(b / "kingress")],
        env={
            "KUBECONFIG": str(conf / "kingress.kubeconfig"),
            "KINGRESS_CLASS": s.ingress_class,
            "KINGRESS_LISTEN": f"{s.node_ip}:80",
            "KINGRESS_ADDRESS": s.node_ip,
            "KINGRESS_PRIVATE_LISTEN": f"{s.node_ip}:{KINGRESS_PRIVATE_PORT}",
            "KINGRESS_PRIVATE_DOMAIN": KINGRESS_PRIVATE_DOMAIN,
        },
    )
    return [
        [*relay_procs, registry, etcd, containerd],
        [apiserver],
        [controller_manager, scheduler, kubelet, kube_proxy, kingress],
    ]


def write_configs(s: Settings) -> None:
    pki.ensure(s)
    kubeconfigs(s)
    containerd_config(s)
    cni_config(s)
    kubelet_config(s)
    kube_proxy_config(s)
    for sub in ("etcd", "registry", "kubelet", "pod-logs", "containerd/tmp", "cni/ipam"):
        (s.home / sub).mkdir(parents=True, exist_ok=True)
    (s.home / "etcd").chmod(0o700)
