"""Images the cluster needs, made here and pushed to the cluster's own registry.

No registry outside this machine is reachable, so there is no distroless, no pause and no CoreDNS
image to pull. The project makes them: a ``static`` base (an empty image plus CA certificates,
``/etc/passwd`` with user 65532 ``nonroot`` and a writable ``/tmp``, user 65532, the shape of
distroless/static that Knative's images are built on and whose ``runAsNonRoot`` they rely on), a
pause image (``infra/cluster/images/pause``) and a CoreDNS image, layered with ``crane append``.
Knative Serving's images are built by ko onto that base (``knative.py``).

The registry (``crane registry serve``) runs inside the cluster's namespace on its loopback and is
relayed to the same port on the host's loopback, so ``localhost:PORT/...`` names the same images
for ko and crane on the host and for containerd in the namespace.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

from .settings import Settings

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    mode: int = 0o644,
    uid: int = 0,
    src: Path | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = uid
    if src is not None:
        data = src.read_bytes()
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = mode
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))


def _layer(path: Path, files: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for f in files:
            _add(tar, *f[:2], **(f[2] if len(f) > 2 else {}))
    return path


def crane(s: Settings, *args: str, capture: bool = False) -> str:
    r = subprocess.run([str(s.bin / "crane"), *args], text=True, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(
            f"ripple-cluster: crane {' '.join(args)} failed: {r.stderr.strip()}\n"
            f"Is the cluster's registry up (make cluster-status)?"
        )
    return r.stdout.strip()


def exists(s: Settings, ref: str) -> bool:
    return subprocess.run([str(s.bin / "crane"), "digest", ref], capture_output=True).returncode == 0


def wait_registry(s: Settings, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([str(s.bin / "crane"), "catalog", s.registry], capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit(
        f"ripple-cluster: the registry at {s.registry} does not answer; see {s.logs}/registry.log"
    )


def base_ref(s: Settings) -> str:
    return f"{s.registry}/ripple/static:latest"


def ensure_base(s: Settings) -> str:
    ref = base_ref(s)
    if exists(s, ref):
        return ref
    work = s.home / "images"
    layer = _layer(
        work / "static.tar",
        [
            ("etc", None, {"mode": 0o755}),
            ("etc/passwd", PASSWD.encode()),
            ("etc/group", GROUP.encode()),
            ("etc/ssl", None, {"mode": 0o755}),
            ("etc/ssl/certs", None, {"mode": 0o755}),
            ("etc/ssl/certs/ca-certificates.crt", None, {"src": HOST_CA}),
            ("tmp", None, {"mode": 0o1777}),
            ("home", None, {"mode": 0o755}),
            ("home/nonroot", None, {"mode": 0o700, "uid": 65532}),
        ],
    )
    crane(s, "append", "-f", str(layer), "-t", ref + "-layer")
    crane(
        s,
        "mutate",
        ref + "-layer",
        "--user",
        "65532",
        "--set-platform",
        "linux/amd64",
        "--env",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "-t",
        ref,
    )
    return ref


def ensure_binary_image(s: Settings, name: str, binary: Path, entrypoint: list[str]) -> str:
    """An image of one static binary at /<name> on the static base."""
    ref = f"{s.registry}/ripple/{name}:latest"
    if exists(s, ref):
        return ref
    base = ensure_base(s)
    layer = _layer(s.home / "images" / f"{name}.tar", [(name, None, {"src": binary, "mode": 0o755})])
    crane(s, "append", "-b", base, "-f", str(layer), "-t", ref + "-layer")
    crane(s, "mutate", ref + "-layer", "--entrypoint", ",".join(entrypoint), "-t", ref)
    return ref


def ensure_all(s: Settings) -> dict[str, str]:
    wait_registry(s)
    return {
        "base": ensure_base(s),
        "pause": ensure_binary_image(s, "pause", s.bin / "pause", ["/pause"]),
        "coredns": ensure_binary_image(s, "coredns", s.bin / "coredns", ["/coredns"]),
        "hello": ensure_binary_image(s, "hello", s.bin / "hello", ["/hello"]),
        "eventlog": ensure_binary_image(s, "eventlog", s.bin / "eventlog", ["/eventlog"]),
        "brokeralias": ensure_binary_image(s, "brokeralias", s.bin / "brokeralias", ["/brokeralias"]),
    }
