"""What the delivery steps share: their settings (environment variables, read only here), the
image tag (the git commit) and the error every step raises.

  RIPPLE_BASE_IMAGE        "" = the Containerfiles' real bases; local-debian = stand-ins    ""
  RIPPLE_CONTAINER_ENGINE  podman, or buildah (build and push only, as OpenShift runners)  podman
  RIPPLE_IMAGE_TAG         the images' tag    git short sha (+"-dirty" for a worktree build of a
                                                  tree with changes)
  RIPPLE_IMAGE_SOURCE      what the images are built from: worktree (the files as they are) or
                           head (the last commit, exported with `git archive`: uncommitted work
                           stays out; `make cluster-deploy` sets it)                     worktree
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

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ripple_stack.settings import REPO_ROOT, load_settings

LOCAL_DEBIAN = "local-debian"
# The stand-ins, named after what they stand in for.
PYTHON_STAND_IN = "localhost/ripple/stand-in-ubi9-python-311:bookworm"
FLINK_STAND_IN = "localhost/ripple/stand-in-flink-2.0.2-java17:bookworm"
MAVEN_STAND_IN = "localhost/ripple/stand-in-maven-3-java17:bookworm"
DEBIAN_SUITE = "bookworm"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLINK_IMAGE_NAME = "ripple-flink"
SOURCE_URL_DEFAULT = "https://gitlab.com/ripple/ripple"


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
    source: str = "worktree"  # one of IMAGE_SOURCES

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


# What an image build reads: the working tree as it is, or the last commit (git archive HEAD).
IMAGE_SOURCES = ("worktree", "head")


def image_source(value: str) -> str:
    """RIPPLE_IMAGE_SOURCE checked: "worktree" when empty; anything else unknown is refused."""
    source = value.strip().lower() or "worktree"
    if source not in IMAGE_SOURCES:
        raise ImageError(
            f"RIPPLE_IMAGE_SOURCE={value!r}: set it to worktree (build the files as they are) or head "
            "(build the last commit; uncommitted changes stay out), or leave it empty."
        )
    return source


def image_tag(sha: str, dirty: bool, source: str) -> str:
    """The images' tag: the commit, with "-dirty" only when the build reads a changed working tree
    (a build of HEAD is the commit whatever the tree holds)."""
    return f"{sha}-dirty" if dirty and source == "worktree" else sha


def is_head_build(tag: str, head: str) -> bool:
    """Whether images tagged `tag` were built from commit `head` and nothing else: a "-dirty" tag
    (a working tree with changes) or another commit's tag is not."""
    return tag == head


def head_sha() -> str:
    return git("rev-parse", "--short=12", "HEAD") or "unknown"


def commit_tag(source: str = "worktree") -> str:
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return image_tag(head_sha(), dirty, source)


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
    source = image_source(env.get("RIPPLE_IMAGE_SOURCE", ""))
    return ImageConfig(
        home=load_settings().home,
        base=base,
        engine=engine,
        tag=env.get("RIPPLE_IMAGE_TAG") or commit_tag(source),
        registry_port=port,
        registry=env.get("IMAGE_REGISTRY") or f"127.0.0.1:{port}",
        namespace=env.get("IMAGE_NAMESPACE", "ripple"),
        debian_mirror=env.get("RIPPLE_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        ca_bundle=env.get("RIPPLE_BUILD_CA_BUNDLE", default_ca),
        source=source,
    )


# --- podman, configured under RIPPLE_HOME ----------------------------------------------------
