"""`python -m ripple_delivery build|registry|push|save|references|kn|deploy|smoke-deployed`:
the Makefile's image and deploy targets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ripple_stack.settings import REPO_ROOT

from .build import build_images, image_specs
from .config import ImageError, load_config
from .deploy import deploy, kn_commands, smoke_deployed
from .registry import image_references_by_digest, push_images, save_images, serve_registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ripple_delivery", description=__doc__.splitlines()[0])
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
