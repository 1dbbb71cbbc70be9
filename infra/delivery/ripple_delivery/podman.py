"""podman (or buildah) as ripple runs it: configuration and storage under $RIPPLE_HOME/containers,
never /etc: runc (crun cannot run on this machine's cgroup layout), ulimits the host allows,
host networking, the local insecure registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .config import ImageConfig, ImageError


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
