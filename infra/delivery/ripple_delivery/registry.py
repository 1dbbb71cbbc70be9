"""The local OCI registry (crane registry serve), push, OCI archives for CI's push job, and the
image references by digest that the Helm chart and kn use."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ripple_stack.settings import load_settings

from .build import image_specs
from .config import ImageConfig, ImageError
from .podman import engine


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
