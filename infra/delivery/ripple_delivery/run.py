"""Run an image the way its Knative manifest runs it (env, command, user, memory), against the
local stack: the image tests' smoke runs."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import ImageConfig, ImageError
from .podman import engine, inspect_image


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
    from knative_standins.serving.manifest import container_environment, first_container, load_manifest

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
