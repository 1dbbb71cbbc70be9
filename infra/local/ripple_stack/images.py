"""Container images of ripple: build, run, push and deploy them with podman, from one place.

`make images` builds every `functions/*/Containerfile` and `flink/Containerfile` with podman,
tagged with the git commit. podman's configuration and storage live under
$RIPPLE_HOME/containers (never /etc): runc (crun cannot run on this machine's cgroup layout),
ulimits the host allows, host networking, a local insecure registry.

The real bases (UBI python-311, flink:2.0.2) are pulled from registries a cluster's builder
reaches. Where none is reachable, RIPPLE_BASE_IMAGE=local-debian builds stand-in bases from
Debian packages with mmdebstrap, laid out like the real ones, and passes them as build
arguments; the Containerfiles keep the real bases. The stand-in is chosen explicitly and
announced on every build, never silently.

Configuration (environment variables, read only here):
  RIPPLE_BASE_IMAGE        "" = the Containerfiles' real bases; local-debian = stand-ins    ""
  RIPPLE_CONTAINER_ENGINE  podman, or buildah (build and push only, as OpenShift runners)  podman
  RIPPLE_IMAGE_TAG         the images' tag                 git short sha (+"-dirty")
  RIPPLE_REGISTRY_PORT     port of the local registry (crane registry serve)               15000
  IMAGE_REGISTRY           where `push` sends images       127.0.0.1:$RIPPLE_REGISTRY_PORT
  IMAGE_NAMESPACE          repository prefix in it          ripple
  RIPPLE_DEBIAN_MIRROR     Debian mirror of the stand-in bases   http://deb.debian.org/debian
  RIPPLE_BUILD_CA_BUNDLE   CA bundle mounted into builds (HTTPS proxies); default: the host's
                           bundle with the stand-in bases, none otherwise
  KUBECONFIG, RIPPLE_NAMESPACE (ripple), RIPPLE_PRODUCTION_NAMESPACE (ripple-production),
  RIPPLE_GATEWAY_URL, RIPPLE_SMOKE_TOKEN: deploy and smoke-deployed (a cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .settings import REPO_ROOT, load_settings

LOCAL_DEBIAN = "local-debian"
# The stand-ins, named after what they stand in for.
PYTHON_STAND_IN = "localhost/ripple/stand-in-ubi9-python-311:bookworm"
FLINK_STAND_IN = "localhost/ripple/stand-in-flink-2.0.2-java17:bookworm"
MAVEN_STAND_IN = "localhost/ripple/stand-in-maven-3-java17:bookworm"
DEBIAN_SUITE = "bookworm"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLINK_IMAGE_NAME = "ripple-flink"
SOURCE_URL_DEFAULT = "https://gitlab.com/ripple/ripple"
# The stand-in for UBI's python-311: its layout (a venv at /opt/app-root on PATH, user 1001 in
# group 0, group-writable home) on Debian's Python 3.11.
PYTHON_STAND_IN_CONTAINERFILE = """\
FROM {rootfs}
RUN python3 -m venv /opt/app-root \\
 && useradd --uid 1001 --gid 0 --home-dir /opt/app-root/src --no-create-home --shell /sbin/nologin default \\
 && mkdir -p /opt/app-root/src \\
 && chown -R 1001:0 /opt/app-root && chmod -R g=u /opt/app-root
ENV HOME=/opt/app-root/src VIRTUAL_ENV=/opt/app-root \\
    PATH=/opt/app-root/src/.local/bin:/opt/app-root/src/bin:/opt/app-root/bin:{system_path} \\
    PYTHONUNBUFFERED=1 LANG=C.UTF-8
WORKDIR /opt/app-root/src
USER 1001
"""
# The stand-in for flink:2.0.2-scala_2.12-java17: a JRE and the Flink distribution at /opt/flink
# (taken from the apache-flink wheel the local stack installed: PyPI ships the same
# distribution), owned by the flink user 9999 as in the official image.
FLINK_STAND_IN_CONTAINERFILE = """\
FROM {rootfs}
RUN groupadd --gid 9999 flink \\
 && useradd --uid 9999 --gid flink --home-dir /opt/flink --no-create-home flink
# Owned by flink in the same layer as the files (a chown afterwards would copy 360 MB again).
COPY --chown=9999:9999 flink/ /opt/flink/
ENV FLINK_HOME=/opt/flink JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 LANG=C.UTF-8 \\
    PATH=/opt/flink/bin:{system_path}
WORKDIR /opt/flink
USER flink
"""


class ImageError(Exception):
    """Something an image step needs is missing or failed; the message says what to do."""


@dataclass(frozen=True)
class ImageConfig:
    home: Path
    base: str
    engine: str
    tag: str
    registry_port: int
    registry: str
    namespace: str
    debian_mirror: str
    ca_bundle: str

    @property
    def stand_in(self) -> bool:
        return self.base == LOCAL_DEBIAN

    @property
    def containers_dir(self) -> Path:
        return self.home / "containers"

    @property
    def built_file(self) -> Path:
        """What the last build produced: {image name: local reference} (for tests, push, README)."""
        return self.containers_dir / "built.json"

    @property
    def pushed_file(self) -> Path:
        return self.containers_dir / "pushed.json"


def git(*arguments: str) -> str:
    result = subprocess.run(["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def commit_tag() -> str:
    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return f"{sha}-dirty" if git("status", "--porcelain", "--untracked-files=no") else sha


def load_config(env: os._Environ[str] | dict[str, str] = os.environ) -> ImageConfig:
    base = env.get("RIPPLE_BASE_IMAGE", "").strip()
    if base not in ("", LOCAL_DEBIAN):
        raise ImageError(f"RIPPLE_BASE_IMAGE={base!r}: set it to {LOCAL_DEBIAN} or leave it empty.")
    engine = env.get("RIPPLE_CONTAINER_ENGINE", "podman").strip() or "podman"
    if engine not in ("podman", "buildah"):
        raise ImageError(f"RIPPLE_CONTAINER_ENGINE={engine!r}: set it to podman or buildah.")
    raw_port = env.get("RIPPLE_REGISTRY_PORT", "15000")
    if not raw_port.isdigit() or not 1024 <= int(raw_port) <= 65535:
        raise ImageError(f"RIPPLE_REGISTRY_PORT={raw_port!r}: set it to a port in 1024-65535.")
    port = int(raw_port)
    default_ca = "/etc/ssl/certs/ca-certificates.crt" if base == LOCAL_DEBIAN else ""
    return ImageConfig(
        home=load_settings().home,
        base=base,
        engine=engine,
        tag=env.get("RIPPLE_IMAGE_TAG") or commit_tag(),
        registry_port=port,
        registry=env.get("IMAGE_REGISTRY") or f"127.0.0.1:{port}",
        namespace=env.get("IMAGE_NAMESPACE", "ripple"),
        debian_mirror=env.get("RIPPLE_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        ca_bundle=env.get("RIPPLE_BUILD_CA_BUNDLE", default_ca),
    )


# --- podman, configured under RIPPLE_HOME ----------------------------------------------------


def write_podman_config(config: ImageConfig) -> dict[str, str]:
    """Write containers.conf/storage.conf/registries.conf; return the env that selects them."""
    folder = config.containers_dir
    (folder / "storage").mkdir(parents=True, exist_ok=True)
    (folder / "run").mkdir(parents=True, exist_ok=True)
    files = {
        # runc: crun fails on this cgroup v1 layout. The host refuses podman's default ulimits
        # (no CAP_SYS_RESOURCE) but accepts these. Host networking: no iptables edits.
        "containers.conf": (
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            'netns = "host"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{folder / "events.log"}"\n'
            'runtime = "runc"\n'
        ),
        "storage.conf": (
            f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "storage"}"\n'
            f'runroot = "{folder / "run"}"\n'
        ),
        # No short-name searches (nothing is pulled by accident); the local registry is plain HTTP.
        "registries.conf": (
            "unqualified-search-registries = []\n"
            f'[[registry]]\nlocation = "127.0.0.1:{config.registry_port}"\ninsecure = true\n'
        ),
    }
    for name, text in files.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return {
        "CONTAINERS_CONF": str(folder / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(folder / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(folder / "registries.conf"),
    }


def engine_env(config: ImageConfig) -> dict[str, str]:
    return {**os.environ, **write_podman_config(config)}


def podman_available() -> bool:
    return shutil.which("podman") is not None and shutil.which("runc") is not None


def engine(config: ImageConfig, *arguments: str, check: bool = True, capture: bool = False, **kwargs):
    binary = shutil.which(config.engine)
    if binary is None:
        raise ImageError(
            f"{config.engine} is missing: run `make podman` (apt packages podman runc mmdebstrap)."
        )
    result = subprocess.run(
        [binary, *arguments],
        env=engine_env(config),
        text=True,
        capture_output=capture,
        **kwargs,
    )
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if capture else ""
        raise ImageError(
            f"`{config.engine} {' '.join(arguments[:3])} …` failed ({result.returncode}). {detail}"
        )
    return result


def image_exists(config: ImageConfig, reference: str) -> bool:
    return engine(config, "image", "exists", reference, check=False).returncode == 0


def inspect_image(config: ImageConfig, reference: str) -> dict:
    """podman's image inspection: Config (User, Env, Labels...), Size."""
    if config.engine == "buildah":
        found = json.loads(engine(config, "inspect", "--type", "image", reference, capture=True).stdout)
        return {"Config": found.get("OCIv1", {}).get("config", {}), "Size": None}
    output = engine(config, "image", "inspect", reference, capture=True).stdout
    return json.loads(output)[0]


# --- stand-in bases from Debian packages -------------------------------------------------------


def _debootstrap(config: ImageConfig, packages: Sequence[str], reference: str) -> None:
    """A minbase Debian rootfs with `packages`, imported as `reference` (no registry involved)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is missing: run `make podman` (it installs podman runc mmdebstrap).")
    mirror = config.debian_mirror
    security = mirror.replace("/debian", "/debian-security")
    sources = [
        f"deb {mirror} {DEBIAN_SUITE} main",
        f"deb {mirror} {DEBIAN_SUITE}-updates main",
        f"deb {security} {DEBIAN_SUITE}-security main",
    ]
    with tempfile.TemporaryDirectory(dir=config.containers_dir) as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        command = [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            # Documentation and translations are dead weight in an image.
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--aptopt=Acquire::Languages none",
            # Without man pages, openjdk's postinst fails on its man1 alternatives links.
            '--essential-hook=mkdir -p "$1/usr/share/man/man1"',
            DEBIAN_SUITE,
            str(rootfs),
            *sources,
        ]
        if subprocess.run(command).returncode != 0:
            raise ImageError(f"mmdebstrap failed for {reference}: is {mirror} reachable?")
        engine(config, "import", "--quiet", str(rootfs), reference, stdout=subprocess.DEVNULL)


def _build_stand_in(config: ImageConfig, reference: str, containerfile: str, context: Path) -> None:
    (context / "Containerfile").write_text(containerfile)
    engine(
        config,
        "build",
        "--quiet",
        "--network",
        "host",
        "-t",
        reference,
        str(context),
        stdout=subprocess.DEVNULL,
    )


def ensure_python_stand_in(config: ImageConfig, say=print) -> str:
    if image_exists(config, PYTHON_STAND_IN):
        return PYTHON_STAND_IN
    say(f"building the stand-in base {PYTHON_STAND_IN} from Debian {DEBIAN_SUITE} packages (once, ~1 min)…")
    rootfs = "localhost/ripple/stand-in-rootfs-python:bookworm"
    if not image_exists(config, rootfs):
        _debootstrap(config, ["python3", "python3-venv", "ca-certificates"], rootfs)
    with tempfile.TemporaryDirectory(dir=config.containers_dir) as scratch:
        _build_stand_in(
            config,
            PYTHON_STAND_IN,
            PYTHON_STAND_IN_CONTAINERFILE.format(rootfs=rootfs, system_path=SYSTEM_PATH),
            Path(scratch),
        )
    return PYTHON_STAND_IN


def flink_distribution() -> Path:
    """The Flink distribution inside the apache-flink wheel `make up` installed."""
    found = sorted((load_settings().dist_dir / "flink-venv").glob("lib/python3*/site-packages/pyflink"))
    if not found or not (found[0] / "bin" / "flink").exists():
        raise ImageError("the Flink distribution is missing: run `make up` once (it installs apache-flink).")
    return found[0]


def ensure_flink_stand_ins(config: ImageConfig, say=print) -> tuple[str, str]:
    if not image_exists(config, FLINK_STAND_IN):
        say(f"building the stand-in base {FLINK_STAND_IN} (JRE 17 + the Flink 2.0.2 distribution)…")
        rootfs = "localhost/ripple/stand-in-rootfs-jre:bookworm"
        # The rootfs images stay: rebuilding a stand-in after an edit then skips mmdebstrap.
        if not image_exists(config, rootfs):
            _debootstrap(config, ["openjdk-17-jre-headless", "ca-certificates", "procps"], rootfs)
        with tempfile.TemporaryDirectory(dir=config.containers_dir) as scratch:
            target = Path(scratch) / "flink"
            target.mkdir()
            for part in ("bin", "conf", "lib", "opt", "plugins"):
                shutil.copytree(flink_distribution() / part, target / part, symlinks=True)
            (target / "log").mkdir()
            _build_stand_in(
                config,
                FLINK_STAND_IN,
                FLINK_STAND_IN_CONTAINERFILE.format(rootfs=rootfs, system_path=SYSTEM_PATH),
                Path(scratch),
            )
    if not image_exists(config, MAVEN_STAND_IN):
        say(f"building the stand-in base {MAVEN_STAND_IN} (Maven + JDK 17)…")
        _debootstrap(config, ["maven", "openjdk-17-jdk-headless", "ca-certificates"], MAVEN_STAND_IN)
    return FLINK_STAND_IN, MAVEN_STAND_IN


# --- building -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    name: str  # the repository's last part: gateway, ..., ripple-flink
    containerfile: Path
    kind: str  # "function" or "flink"
    build_args: dict[str, str] = field(default_factory=dict)

    def local_reference(self, config: ImageConfig) -> str:
        return f"localhost/{config.namespace}/{self.name}:{config.tag}"


def image_specs(include_flink: bool = True) -> list[ImageSpec]:
    """Every function with a Containerfile (found, not listed), then the Flink job's image."""
    specs = [
        ImageSpec(path.parent.name, path, "function")
        for path in sorted((REPO_ROOT / "functions").glob("*/Containerfile"))
    ]
    if include_flink and (REPO_ROOT / "flink" / "Containerfile").exists():
        specs.append(ImageSpec(FLINK_IMAGE_NAME, REPO_ROOT / "flink" / "Containerfile", "flink"))
    return specs


def oci_labels(config: ImageConfig) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": os.environ.get("CI_PROJECT_URL") or SOURCE_URL_DEFAULT,
        "org.opencontainers.image.revision": git("rev-parse", "HEAD") or "unknown",
        "org.opencontainers.image.version": config.tag,
        "org.opencontainers.image.vendor": "ripple",
    }


def build_command(config: ImageConfig, spec: ImageSpec, base_args: dict[str, str]) -> list[str]:
    command = [
        "build",
        "--network",
        "host",
        "-f",
        str(spec.containerfile),
        "-t",
        spec.local_reference(config),
    ]
    for key, value in oci_labels(config).items():
        command += ["--label", f"{key}={value}"]
    for key, value in {**base_args, **spec.build_args}.items():
        command += ["--build-arg", f"{key}={value}"]
    if config.ca_bundle and Path(config.ca_bundle).exists():
        # Build-time only (RUN mounts are not part of the image): pip behind a TLS proxy.
        command += ["-v", f"{config.ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    if spec.kind == "flink" and config.stand_in:
        # The connectors stage resolves flink/pom.xml from the Maven cache the local stack
        # filled, instead of downloading it again (a cluster builder starts empty and downloads).
        m2 = Path.home() / ".m2"
        if m2.is_dir():
            command += ["-v", f"{m2}:/root/.m2:z"]
        java_cacerts = Path("/etc/ssl/certs/java/cacerts")
        if java_cacerts.exists():
            command += ["-v", f"{java_cacerts}:/etc/ssl/certs/java/cacerts:ro"]
    return [*command, str(REPO_ROOT)]


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


def build_images(config: ImageConfig, names: Sequence[str] | None = None, say=print) -> dict[str, str]:
    """Build every image (or those named); return {name: local reference}. Cached layers are reused."""
    specs = [spec for spec in image_specs() if names is None or spec.name in names]
    include_flink = any(spec.kind == "flink" for spec in specs)
    base_args: dict[str, str] = {}
    flink_args: dict[str, str] = {}
    if config.stand_in:
        banner = "=" * 100
        say(
            f"{banner}\nRIPPLE_BASE_IMAGE=local-debian: building on STAND-IN bases made from Debian "
            f"{DEBIAN_SUITE} packages,\nNOT on UBI python-311 / flink:2.0.2. They prove the images' files, "
            "commands, env, user and permissions,\nnot the real bases' behaviour. Leave RIPPLE_BASE_IMAGE "
            f"empty on a builder that can pull the real bases.\n{banner}"
        )
        if any(spec.kind == "function" for spec in specs):
            base_args["BASE_IMAGE"] = ensure_python_stand_in(config, say)
        if include_flink:
            flink_base, maven = ensure_flink_stand_ins(config, say)
            flink_args = {"FLINK_IMAGE": flink_base, "MAVEN_IMAGE": maven}
    built: dict[str, str] = {}
    timings: list[tuple[str, float]] = []
    for spec in specs:
        started = time.monotonic()
        say(f"building {spec.local_reference(config)} from {spec.containerfile.relative_to(REPO_ROOT)}…")
        arguments = flink_args if spec.kind == "flink" else base_args
        engine(config, *build_command(config, spec, arguments), stdout=subprocess.DEVNULL)
        timings.append((spec.name, time.monotonic() - started))
        built[spec.name] = spec.local_reference(config)
    config.built_file.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(config.built_file.read_text()) if config.built_file.exists() else {}
    config.built_file.write_text(json.dumps({**previous, **built, "_tag": config.tag}, indent=2) + "\n")
    say(f"\n{'image':<52} {'size':>8} {'build':>7}")
    for name, seconds in timings:
        size = inspect_image(config, built[name])["Size"]
        say(f"{built[name]:<52} {human_size(size) if size else '?':>8} {seconds:>6.0f}s")
    return built


# --- running an image the way its Knative manifest runs it -------------------------------


def memory_flag(quantity: str) -> str:
    """A Kubernetes memory quantity as podman's --memory value ("512Mi" -> "512m")."""
    binary = {"Ki": "k", "Mi": "m", "Gi": "g"}
    decimal = {"k": 10**3, "M": 10**6, "G": 10**9}
    text = str(quantity).strip()
    if text[-2:] in binary and text[:-2].isdigit():
        return text[:-2] + binary[text[-2:]]
    if text[-1:] in decimal and text[:-1].isdigit():
        return str(int(text[:-1]) * decimal[text[-1]])
    if text.isdigit():
        return text
    raise ImageError(f"memory limit {quantity!r} is not a quantity podman understands (use Mi or Gi).")


def check_user(image: str, user: str) -> None:
    """Refuse an image that would run as root: what runAsNonRoot and OpenShift's restricted SCC do.

    Kubernetes can only verify a numeric user, so a user name fails too.
    """
    uid = user.split(":", 1)[0].strip()
    if uid in ("", "0", "root"):
        raise ImageError(
            f"{image} runs as root (USER {user or 'unset'}): set a numeric non-root USER, e.g. 1001."
        )
    if not uid.isdigit():
        raise ImageError(
            f"{image} has the non-numeric USER {user!r}: runAsNonRoot cannot verify it; use 1001."
        )


def manifest_container(manifest: dict) -> dict:
    try:
        return manifest["spec"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        raise ImageError("the manifest has no spec.template.spec.containers[0]") from None


def run_arguments(
    manifest: dict, image: str, *, name: str, port: int, env_file: Path, user: str | None = None
) -> list[str]:
    """`podman run` arguments equal to how a cluster runs the manifest's first container.

    `user` overrides the uid, as OpenShift's restricted SCC does (an arbitrary uid in group 0).
    """
    container = manifest_container(manifest)
    security = container.get("securityContext", {})
    arguments = ["run", "--detach", "--name", name, "--network", "host"]
    arguments += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    arguments += ["--env-file", str(env_file), "--env", f"PORT={port}"]
    if security.get("readOnlyRootFilesystem"):
        # podman mounts fresh tmpfs on /tmp, /var/tmp and /run, like a pod's emptyDir for /tmp.
        arguments.append("--read-only")
    if user or "runAsUser" in security:
        arguments += ["--user", user or str(security["runAsUser"])]
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        arguments += ["--memory", memory_flag(limit)]
    if container.get("command"):
        # Kubernetes: command replaces the ENTRYPOINT, args replace the CMD.
        arguments += ["--entrypoint", json.dumps(container["command"])]
    return [*arguments, image, *container.get("args", [])]


def manifest_environment(manifest_path: Path, settings, secrets) -> dict[str, str]:
    """The manifest's env with cluster addresses rewritten and secrets resolved: the same code
    as the local stack's functions (serving/manifest.py), so both run with the same env."""
    from .serving.manifest import container_environment, first_container, load_manifest

    where = str(manifest_path)
    container = first_container(load_manifest(manifest_path), where)
    return container_environment(container, where, settings.cluster_address_map(), secrets)


@dataclass
class RunningContainer:
    config: ImageConfig
    name: str
    image: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self, lines: int = 30) -> str:
        result = engine(self.config, "logs", "--tail", str(lines), self.name, check=False, capture=True)
        return (result.stdout + result.stderr).strip()

    def exit_code(self) -> int | None:
        """The container's exit code, or None while it runs."""
        result = engine(
            self.config,
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            self.name,
            capture=True,
        )
        status, code = result.stdout.split()
        return None if status in ("running", "created", "configured") else int(code)

    def exec(self, *command: str) -> str:
        return engine(self.config, "exec", self.name, *command, capture=True).stdout.strip()

    def wait_until_answering(self, path: str, limit_s: float = 90.0) -> None:
        """Until `path` answers 200; fails with the container's own words if its command exits."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise ImageError(
                    f"{self.image}: the container's command exited with {code} before {path} answered:\n"
                    + self.logs()
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ImageError(f"{self.image}: {path} did not answer 200 within {limit_s:.0f} s:\n{self.logs()}")

    def remove(self) -> None:
        engine(self.config, "rm", "--force", "--time", "5", self.name, check=False, capture=True)


def run_like_manifest(
    config: ImageConfig,
    manifest: dict,
    image: str,
    env: dict[str, str],
    port: int,
    scratch: Path,
    user: str | None = None,
) -> RunningContainer:
    """Start `image` as the manifest's container would run; the caller removes it."""
    container = manifest_container(manifest)
    if container.get("securityContext", {}).get("runAsNonRoot", True):
        check_user(image, inspect_image(config, image)["Config"].get("User", ""))
    env_file = scratch / "container.env"
    # A file rather than --env flags: secret values stay out of the process list.
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    name = f"ripple-test-{manifest['metadata']['name']}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    arguments = run_arguments(manifest, image, name=name, port=port, env_file=env_file, user=user)
    engine(config, *arguments, capture=True)
    return RunningContainer(config, name, image, port)


# --- the local registry --------------------------------------------------------------------


def registry_url(config: ImageConfig) -> str:
    return f"http://127.0.0.1:{config.registry_port}"


def registry_up(config: ImageConfig) -> bool:
    try:
        with urllib.request.urlopen(registry_url(config) + "/v2/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def serve_registry(config: ImageConfig, crane: Path, say=print) -> None:
    """crane registry serve in the background (pid in $RIPPLE_HOME/run/registry.pid)."""
    if registry_up(config):
        say(f"registry already answering at {registry_url(config)}")
        return
    if not crane.exists():
        raise ImageError("crane is missing: run `make registry` (it builds crane with go install).")
    settings = load_settings()
    storage = config.containers_dir / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.log_dir / "registry.log", "ab") as log:
        process = subprocess.Popen(
            [
                str(crane),
                "registry",
                "serve",
                "--address",
                f"127.0.0.1:{config.registry_port}",
                "--disk",
                str(storage),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (settings.run_dir / "registry.pid").write_text(f"{process.pid}\n")
    for _ in range(50):
        if registry_up(config):
            say(f"registry serving at {registry_url(config)} (storage {storage}, log in {settings.log_dir})")
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise ImageError(
        f"crane registry did not start on port {config.registry_port}: see .ripple/logs/registry.log."
    )


def push_images(config: ImageConfig, say=print) -> dict[str, str]:
    """Push the last build to IMAGE_REGISTRY; return {name: registry reference by digest}."""
    if not config.built_file.exists():
        raise ImageError("no images built yet: run `make images` first.")
    built = {k: v for k, v in json.loads(config.built_file.read_text()).items() if not k.startswith("_")}
    local = config.registry.startswith(("127.0.0.1:", "localhost:"))
    if local and not registry_up(config):
        raise ImageError(f"no registry answers at {config.registry}: run `make registry` first.")
    user, password = os.environ.get("IMAGE_REGISTRY_USER"), os.environ.get("IMAGE_REGISTRY_PASSWORD")
    if user and password:
        login = ["login", "--username", user, "--password-stdin", config.registry.split("/")[0]]
        engine(config, *login, input=password, capture=True)
    archives = config.containers_dir / "archives"
    pushed: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, reference in built.items():
            if (archives / f"{name}.tar").exists() and not image_present(config, reference):
                # Built by another CI job: its images arrive as OCI archives.
                engine(
                    config, "pull", "--quiet", f"oci-archive:{archives / name}.tar", stdout=subprocess.DEVNULL
                )
                engine(config, "tag", oci_archive_name(config, name), reference)
            target = f"{config.registry}/{config.namespace}/{name}:{reference.rsplit(':', 1)[1]}"
            digest_file = Path(scratch) / f"{name}.digest"
            arguments = ["push", "--quiet", "--digestfile", str(digest_file)]
            if local:
                arguments.append("--tls-verify=false")
            engine(config, *arguments, reference, target, stdout=subprocess.DEVNULL)
            pushed[name] = f"{target.rsplit(':', 1)[0]}@{digest_file.read_text().strip()}"
            say(f"pushed {pushed[name]}")
    config.pushed_file.write_text(json.dumps({**pushed, "_tag": config.tag}, indent=2) + "\n")
    return pushed


def oci_archive_name(config: ImageConfig, name: str) -> str:
    return f"localhost/{config.namespace}/{name}:archived"


def image_present(config: ImageConfig, reference: str) -> bool:
    arguments = ["inspect", "--type", "image"] if config.engine == "buildah" else ["image", "exists"]
    return engine(config, *arguments, reference, check=False, capture=True).returncode == 0


def save_images(config: ImageConfig, say=print) -> None:
    """The last build as OCI archives (for a CI job that pushes what another job built)."""
    if not config.built_file.exists():
        raise ImageError("no images built yet: run `make images` first.")
    built = {k: v for k, v in json.loads(config.built_file.read_text()).items() if not k.startswith("_")}
    archives = config.containers_dir / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    for name, reference in built.items():
        target = archives / f"{name}.tar"
        target.unlink(missing_ok=True)
        # One form for podman and buildah: push into an OCI archive under a fixed name.
        engine(config, "push", "--quiet", reference, f"oci-archive:{target}:{oci_archive_name(config, name)}")
        say(f"saved {reference} -> {target}")


def registry_digest(config: ImageConfig, name: str, tag: str) -> str:
    """The manifest digest of namespace/name:tag in the registry (Docker-Content-Digest)."""
    request = urllib.request.Request(
        f"http://{config.registry}/v2/{config.namespace}/{name}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.headers["Docker-Content-Digest"]
    except (urllib.error.URLError, OSError) as error:
        raise ImageError(
            f"{config.registry} has no {config.namespace}/{name}:{tag} ({error}): run `make images push`."
        ) from None


def image_references_by_digest(config: ImageConfig) -> dict[str, str]:
    """{image name: registry/namespace/name@sha256:…} for the images of the current tag."""
    prefix = f"{config.registry}/{config.namespace}"
    if config.pushed_file.exists():
        # What `push` recorded (in CI: an artifact of the push job; remote registries need a login).
        pushed = json.loads(config.pushed_file.read_text())
        if pushed.get("_tag") == config.tag and all(
            str(pushed.get(spec.name, "")).startswith(f"{prefix}/{spec.name}@") for spec in image_specs()
        ):
            return {spec.name: pushed[spec.name] for spec in image_specs()}
    return {
        spec.name: f"{prefix}/{spec.name}@{registry_digest(config, spec.name, config.tag)}"
        for spec in image_specs()
    }


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


# --- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ripple_stack.images", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build every image, tagged with the git commit")
    build.add_argument("--only-functions", action="store_true")
    registry = commands.add_parser("registry", help="serve the local registry (crane registry serve)")
    registry.add_argument("--crane", type=Path, default=REPO_ROOT / ".ripple" / "dist" / "bin" / "crane")
    commands.add_parser("push", help="push the last build to IMAGE_REGISTRY")
    commands.add_parser("save", help="save the last build as OCI archives")
    commands.add_parser("references", help="print the image references by digest")
    commands.add_parser("kn", help="print kn service create/update commands for the built images")
    deploy_parser = commands.add_parser("deploy", help="helm upgrade --install the packaged chart")
    deploy_parser.add_argument("--helm", type=Path, default=REPO_ROOT / ".ripple" / "dist" / "bin" / "helm")
    deploy_parser.add_argument("--production", action="store_true")
    commands.add_parser("smoke-deployed", help="smoke-test the deployed gateway")
    arguments = parser.parse_args(argv)
    try:
        config = load_config()
        if arguments.command == "build":
            names = [spec.name for spec in image_specs(include_flink=not arguments.only_functions)]
            build_images(config, names)
        elif arguments.command == "registry":
            serve_registry(config, arguments.crane)
        elif arguments.command == "push":
            push_images(config)
        elif arguments.command == "save":
            save_images(config)
        elif arguments.command == "references":
            print(json.dumps(image_references_by_digest(config), indent=2))
        elif arguments.command == "kn":
            print("\n".join(kn_commands(config)))
        elif arguments.command == "deploy":
            deploy(config, arguments.helm, arguments.production)
        elif arguments.command == "smoke-deployed":
            smoke_deployed()
    except ImageError as error:
        print(f"ripple: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
