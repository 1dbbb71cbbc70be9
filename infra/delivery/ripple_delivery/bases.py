"""Stand-in base images built from Debian packages (mmdebstrap), for machines that reach no image
registry: laid out like the real bases (UBI python-311, flink:2.0.2), passed as build arguments
so the Containerfiles keep the real ones. Chosen explicitly (RIPPLE_BASE_IMAGE=local-debian) and
announced on every build, never silently."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ripple_stack.settings import load_settings

from .config import (
    DEBIAN_SUITE,
    FLINK_STAND_IN,
    MAVEN_STAND_IN,
    PYTHON_STAND_IN,
    SYSTEM_PATH,
    ImageConfig,
    ImageError,
)
from .podman import engine, image_exists

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
