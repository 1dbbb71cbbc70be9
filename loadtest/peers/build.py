"""Build the peers from source into $RIPPLE_HOME/peers, once per tag.

- Strimzi Kafka Bridge (tag 0.33.1, Java 17): `mvn package`, the distribution tarball unpacked.
- Knative's Kafka data plane (eventing-kafka-broker, tag knative-v1.23.0, Java 21+): the shaded
  jars of data-plane/receiver-loom and data-plane/dispatcher-loom, built in one Maven run.
- Kafka's ProducerPerformance (kafka-tools, same version as the stack's Kafka) from Maven Central.

A build whose output exists with a stamp naming the same tag and commit is skipped. Maven runs
under nice with -T1 (the machine is shared) and a settings file that mirrors every repository to
Maven Central (the root pom of eventing-kafka-broker also lists oss.sonatype.org snapshots).
`python -m loadtest.peers.build` builds without benchmarking.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ripple_stack.settings import REPO_ROOT, ConfigError, load_settings

from .config import Peer, PeersConfig, load_config

MAVEN_SETTINGS = """<settings>
  <mirrors>
    <mirror><id>central-only</id><mirrorOf>*</mirrorOf><url>https://repo.maven.apache.org/maven2</url></mirror>
  </mirrors>
</settings>
"""
SKIP_CHECKS = [
    "-DskipTests",
    "-Dcheckstyle.skip",
    "-Dspotbugs.skip",
    "-Dmaven.javadoc.skip",
    "-Dmaven.source.skip",
]


@dataclass(frozen=True)
class Built:
    """Paths of what the benchmark runs, and how long each build took (0 = cached)."""

    bridge_home: Path  # bin/kafka_bridge_run.sh, config/, libs/
    receiver_jar: Path
    dispatcher_jar: Path
    kafka_tools_jar: Path
    bridge_commit: str
    knative_commit: str
    seconds: dict[str, float]


class BuildError(Exception):
    """A build step failed; the message says which and where its log is."""


def _run(command: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    with log.open("a") as output:
        output.write(f"$ {' '.join(command)}\n")
        output.flush()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise BuildError(f"`{' '.join(command[:6])} …` failed ({result.returncode}); see {log}")


def _git_source(source: str) -> str:
    """A local path as a file:// URL, so that a shallow fetch works from it too."""
    path = Path(source)
    return path.resolve().as_uri() if path.exists() else source


def checkout(peer: Peer, home: Path, log: Path) -> tuple[Path, str]:
    """A work tree of the peer at its tag under home/src (fetched once per tag); returns it and the commit."""
    tree = home / "src" / peer.name
    if not (tree / ".git").exists():
        tree.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", str(tree)], log)
    have = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "-q", "--verify", f"refs/tags/{peer.tag}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if have.returncode != 0:
        print(f"fetching {peer.name} {peer.tag} from {peer.source}…", flush=True)
        try:
            _run(
                [
                    "git",
                    "-C",
                    str(tree),
                    "fetch",
                    "-q",
                    "--depth",
                    "1",
                    _git_source(peer.source),
                    f"+refs/tags/{peer.tag}:refs/tags/{peer.tag}",
                ],
                log,
            )
        except BuildError:
            raise BuildError(
                f"could not fetch tag {peer.tag} of {peer.name} from {peer.source} (see {log}): check it, "
                "or pass a local clone with PEERS_SOURCES or the peer's PEERS_*_SOURCE "
                "(loadtest/peers/README.md)."
            ) from None
    _run(["git", "-C", str(tree), "checkout", "-q", "-f", f"refs/tags/{peer.tag}^{{commit}}"], log)
    commit = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return tree, commit


def _stamp_ok(stamp: Path, wanted: str, *outputs: Path) -> bool:
    return stamp.exists() and stamp.read_text() == wanted and all(o.exists() for o in outputs)


def _maven(java_home: Path, settings_file: Path, args: list[str], cwd: Path, log: Path) -> float:
    if shutil.which("mvn") is None:
        raise ConfigError("Maven is missing: install it (apt-get install maven) and rerun.")
    env = {**os.environ, "JAVA_HOME": str(java_home), "PATH": f"{java_home}/bin:{os.environ['PATH']}"}
    started = time.monotonic()
    _run(["nice", "-n", "10", "mvn", "-B", "-q", "-T1", "-s", str(settings_file), *args], log, cwd, env)
    return time.monotonic() - started


def build_bridge(config: PeersConfig, settings_file: Path, log: Path) -> tuple[Path, str, float]:
    out = config.home / f"strimzi-kafka-bridge-{config.bridge.tag}"
    stamp = out / ".built"
    tree, commit = checkout(config.bridge, config.home, log)
    wanted = f"{config.bridge.tag} {commit}\n"
    if _stamp_ok(stamp, wanted, out / "bin" / "kafka_bridge_run.sh"):
        return out, commit, 0.0
    print(f"building the Strimzi Kafka Bridge {config.bridge.tag} (Maven, a few minutes)…", flush=True)
    seconds = _maven(config.java17, settings_file, [*SKIP_CHECKS, "clean", "package"], tree, log)
    version = (tree / "release.version").read_text().strip()
    tarball = tree / "target" / f"kafka-bridge-{version}.tar.gz"
    if not tarball.exists():
        raise BuildError(f"the bridge build did not produce {tarball}; see {log}")
    if out.exists():
        shutil.rmtree(out)
    scratch = config.home / "unpack"
    shutil.rmtree(scratch, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(scratch, filter="tar")
    shutil.move(scratch / f"kafka-bridge-{version}", out)
    scratch.rmdir()
    stamp.write_text(wanted)
    return out, commit, seconds


def build_knative(config: PeersConfig, settings_file: Path, log: Path) -> tuple[Path, Path, str, float]:
    out = config.home / f"eventing-kafka-broker-{config.knative.tag}"
    receiver, dispatcher = out / "receiver-loom.jar", out / "dispatcher-loom.jar"
    stamp = out / ".built"
    tree, commit = checkout(config.knative, config.home, log)
    wanted = f"{config.knative.tag} {commit}\n"
    if _stamp_ok(stamp, wanted, receiver, dispatcher):
        return receiver, dispatcher, commit, 0.0
    print(f"building Knative's data plane {config.knative.tag} (Maven, many minutes)…", flush=True)
    # -Drelease leaves out the tests/benchmarks modules; the license plugin would download
    # license texts from the internet, so it is skipped with jacoco.
    args = [
        *SKIP_CHECKS,
        "-Drelease",
        "-Djacoco.skip=true",
        "-Dlicense.skip=true",
        "-Dlicense.skipAggregateDownloadLicenses=true",
        "-Dlicense.skipAggregateAddThirdParty=true",
        "-pl",
        "receiver-loom,dispatcher-loom",
        "-am",
        "clean",
        "package",
    ]
    seconds = _maven(config.java21, settings_file, args, tree / "data-plane", log)
    out.mkdir(parents=True, exist_ok=True)
    for module, target in (("receiver-loom", receiver), ("dispatcher-loom", dispatcher)):
        jars = sorted((tree / "data-plane" / module / "target").glob(f"{module}-*.jar"))
        jars = [j for j in jars if not j.name.startswith("original-") and "sources" not in j.name]
        if not jars:
            raise BuildError(f"the Knative build did not produce data-plane/{module}/target/*.jar; see {log}")
        shutil.copy2(jars[0], target)
    stamp.write_text(wanted)
    return receiver, dispatcher, commit, seconds


def kafka_version() -> str:
    """The Kafka version the stack runs (infra/kafka/pom.xml), so the tools match the broker."""
    pom = (REPO_ROOT / "infra" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if match is None:
        raise BuildError("infra/kafka/pom.xml has no <kafka.version>")
    return match.group(1)


def fetch_kafka_tools(config: PeersConfig, settings_file: Path, log: Path) -> tuple[Path, float]:
    """kafka-tools (ProducerPerformance); the stack's kafka-libs has the rest of its classpath."""
    version = kafka_version()
    out = config.home / "kafka-tools"
    jar = out / f"kafka-tools-{version}.jar"
    if jar.exists():
        return jar, 0.0
    out.mkdir(parents=True, exist_ok=True)
    seconds = _maven(
        config.java17,
        settings_file,
        [
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
            f"-Dartifact=org.apache.kafka:kafka-tools:{version}",
            f"-DoutputDirectory={out}",
        ],
        config.home,
        log,
    )
    if not jar.exists():
        raise BuildError(f"could not fetch kafka-tools {version} from Maven Central; see {log}")
    return jar, seconds


def build_all(config: PeersConfig) -> Built:
    config.home.mkdir(parents=True, exist_ok=True)
    if shutil.which("git") is None:
        raise ConfigError("git is missing: install it (apt-get install git) and rerun.")
    settings_file = config.home / "maven-central-only.xml"
    settings_file.write_text(MAVEN_SETTINGS)
    log = config.home / "build.log"
    bridge_home, bridge_commit, bridge_s = build_bridge(config, settings_file, log)
    receiver, dispatcher, knative_commit, knative_s = build_knative(config, settings_file, log)
    tools, tools_s = fetch_kafka_tools(config, settings_file, log)
    return Built(
        bridge_home=bridge_home,
        receiver_jar=receiver,
        dispatcher_jar=dispatcher,
        kafka_tools_jar=tools,
        bridge_commit=bridge_commit,
        knative_commit=knative_commit,
        seconds={"bridge": bridge_s, "knative": knative_s, "kafka-tools": tools_s},
    )


def main() -> int:
    try:
        built = build_all(load_config(load_settings()))
    except (ConfigError, BuildError) as error:
        print(f"bench-peers: {error}", file=sys.stderr)
        return 2
    for what, seconds in built.seconds.items():
        print(f"{what}: {'cached' if not seconds else f'built in {seconds:.0f} s'}")
    print(f"bridge: {built.bridge_home}\nreceiver: {built.receiver_jar}\ndispatcher: {built.dispatcher_jar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
