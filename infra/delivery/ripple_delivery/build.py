"""Build every `functions/*/Containerfile` and `flink/Containerfile`, tagged with the git commit
and OCI labels; what was built is recorded in $RIPPLE_HOME/containers/built.json.

The functions' images start from the stages they share, `functions/Containerfile` (targets
`build` and `run`), built first and passed to each as FUNCTION_BUILD / FUNCTION_RUN; they are
tagged `localhost/<namespace>/function-build|function-run` (the Containerfiles' defaults, for a
build by hand) and with the commit, and are not pushed: only the functions' images are.

The build context is the repository root as it is, or with RIPPLE_IMAGE_SOURCE=head the last
commit's `functions/`, `flink/` and `.dockerignore`, exported with `git archive` into a temporary
folder: others' uncommitted work in a shared tree then cannot reach an image (`make cluster-deploy`
builds that way)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ripple_stack.settings import REPO_ROOT

from .bases import ensure_flink_stand_ins, ensure_python_stand_in
from .config import DEBIAN_SUITE, FLINK_IMAGE_NAME, SOURCE_URL_DEFAULT, ImageConfig, ImageError, git
from .podman import engine, inspect_image

# The functions' shared stages: functions/Containerfile's targets, in build order.
SHARED_CONTAINERFILE = REPO_ROOT / "functions" / "Containerfile"
SHARED_STAGES = {"build": "FUNCTION_BUILD", "run": "FUNCTION_RUN"}


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


# What a build reads from its context (the .dockerignore keeps the rest out anyway).
CONTEXT_PATHS = ("functions", "flink", ".dockerignore")


@contextlib.contextmanager
def build_context(config: ImageConfig) -> Iterator[Path]:
    """The folder the builds read: the repository root, or HEAD's files exported into a temporary
    folder (removed afterwards) when config.source is "head"."""
    if config.source != "head":
        yield REPO_ROOT
        return
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD", *CONTEXT_PATHS], cwd=REPO_ROOT, capture_output=True
    )
    if archive.returncode != 0:
        raise ImageError(
            f"git archive HEAD failed ({archive.stderr.decode(errors='replace').strip()}): "
            "RIPPLE_IMAGE_SOURCE=head needs a git checkout with a commit; build with "
            "RIPPLE_IMAGE_SOURCE=worktree instead"
        )
    with tempfile.TemporaryDirectory(prefix="ripple-image-context-") as folder:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


def in_context(path: Path, context: Path) -> Path:
    """A repository file's path inside the build context."""
    return context / path.relative_to(REPO_ROOT)


def build_command(
    config: ImageConfig, spec: ImageSpec, base_args: dict[str, str], context: Path = REPO_ROOT
) -> list[str]:
    command = [
        "build",
        "--network",
        "host",
        "-f",
        str(in_context(spec.containerfile, context)),
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
    return [*command, str(context)]


def shared_stage_command(
    config: ImageConfig, target: str, base_args: dict[str, str], context: Path = REPO_ROOT
) -> list[str]:
    """The build of one shared stage, tagged with the commit and as the Containerfiles' default."""
    name = f"localhost/{config.namespace}/function-{target}"
    containerfile = in_context(SHARED_CONTAINERFILE, context)
    command = ["build", "--network", "host", "-f", str(containerfile), "--target", target]
    command += ["-t", f"{name}:{config.tag}", "-t", name]
    for key, value in base_args.items():
        command += ["--build-arg", f"{key}={value}"]
    if config.ca_bundle and Path(config.ca_bundle).exists():
        command += ["-v", f"{config.ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    return [*command, str(context)]


def build_shared_stages(
    config: ImageConfig, base_args: dict[str, str], context: Path = REPO_ROOT, say=print
) -> dict[str, str]:
    """Build functions/Containerfile's stages; the build arguments that point the functions at them."""
    arguments = {}
    for target, argument in SHARED_STAGES.items():
        say(f"building the functions' shared stage {target!r} from functions/Containerfile…")
        engine(config, *shared_stage_command(config, target, base_args, context), stdout=subprocess.DEVNULL)
        arguments[argument] = f"localhost/{config.namespace}/function-{target}:{config.tag}"
    return arguments


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
    with build_context(config) as context:
        if config.source == "head":
            say(f"building from the last commit (RIPPLE_IMAGE_SOURCE=head, git archive HEAD): {config.tag}")
        # The functions' build arguments name the shared stages (built on BASE_IMAGE).
        function_args = (
            build_shared_stages(config, base_args, context, say)
            if any(s.kind == "function" for s in specs)
            else {}
        )
        for spec in specs:
            started = time.monotonic()
            say(f"building {spec.local_reference(config)} from {spec.containerfile.relative_to(REPO_ROOT)}…")
            arguments = flink_args if spec.kind == "flink" else function_args
            engine(config, *build_command(config, spec, arguments, context), stdout=subprocess.DEVNULL)
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
