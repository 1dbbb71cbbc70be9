"""Command line, run from infra/cluster: ``python -m ripple_cluster build|up|eventing|deploy|down|status
[--json]|conformance|env`` (``up --no-knative`` / ``up --no-eventing`` stop before Serving / Eventing).

The Makefile's cluster-* targets call this; each subcommand is described in infra/cluster/README.md.
"""

from __future__ import annotations

import sys

from . import build, cluster, settings


def main(argv: list[str]) -> int:
    s = settings.load()
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "build":
        return build.build(
            s, only=[a for a in rest if not a.startswith("-")] or None, force="--force" in rest
        )
    if cmd == "up":
        return cluster.up(s, knative="--no-knative" not in rest, with_eventing="--no-eventing" not in rest)
    if cmd == "eventing":
        from . import eventing

        eventing.up(s)
        if not eventing.ripple_deployed(s):
            print("  eventing    ripple's functions are not deployed: Broker and KafkaSources not wired "
                  "(make cluster-deploy, then make cluster-eventing)")  # fmt: skip
        return 0
    if cmd == "deploy":
        from . import ripple_deploy

        ripple_deploy.deploy_ripple(s)
        return 0
    if cmd == "down":
        return cluster.down(s)
    if cmd == "status":
        return cluster.status(s, as_json="--json" in rest)
    if cmd == "conformance":
        from . import conformance

        return conformance.run(s, rest)
    if cmd == "env":
        print(f"export KUBECONFIG={s.kubeconfig}\nexport PATH={s.bin}:$PATH")
        return 0
    print(
        f"ripple-cluster: unknown command {cmd!r}; "
        "use build, up, eventing, deploy, down, status, conformance or env",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
