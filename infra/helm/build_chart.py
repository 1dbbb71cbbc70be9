"""Assemble the Helm chart from the repository's own manifests, then lint and package it.

The chart in infra/helm/ripple holds templates and values only; its manifests are the files of
knative/ and infra/, copied into the chart's files/ at build time so that there is no second
copy to keep in step. Run it with `make chart`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_SOURCE = REPO_ROOT / "infra" / "helm" / "ripple"
# infra/ folders that are not cluster manifests.
NOT_MANIFESTS = {"local", "tests", "helm", "schemas"}
REALM_FILE = REPO_ROOT / "infra" / "keycloak" / "realms" / "ripple-realm.json"
HELM_HINT = "helm is missing: run `make helm` (go install helm.sh/helm/v3/cmd/helm) and rerun."


def manifest_files() -> list[Path]:
    found = sorted((REPO_ROOT / "knative").glob("*/*.yaml"))
    for folder in sorted((REPO_ROOT / "infra").iterdir()):
        if folder.is_dir() and folder.name not in NOT_MANIFESTS:
            found.extend(sorted(folder.rglob("*.yaml")))
    return found


def assemble(out_dir: Path) -> Path:
    """Copy the chart and the manifests into out_dir/ripple; return the chart directory."""
    chart = out_dir / "ripple"
    if chart.exists():
        shutil.rmtree(chart)
    shutil.copytree(CHART_SOURCE, chart)
    for manifest in manifest_files():
        target = chart / "files" / manifest.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest, target)
    (chart / "files" / "realms").mkdir(parents=True, exist_ok=True)
    shutil.copy(REALM_FILE, chart / "files" / "realms" / REALM_FILE.name)
    return chart


def pin_images(chart: Path, references: dict[str, str] | None = None) -> dict[str, str]:
    """Point every image of the chart's manifests at the local registry, by digest.

    The images are those `make images` built for the current commit and `make push` sent to the
    registry (ripple_delivery.registry); a manifest's image is matched by its last path segment.
    """
    import re

    from ripple_delivery.config import load_config
    from ripple_delivery.registry import image_references_by_digest

    if references is None:
        references = image_references_by_digest(load_config())
    pattern = re.compile(r"^([ \t-]*image:[ \t]*)(\S+/)?([a-z0-9-]+)([:@]\S+)?[ \t]*$", re.MULTILINE)

    def replace(match: re.Match[str]) -> str:
        reference = references.get(match.group(3))
        return f"{match.group(1)}{reference}" if reference else match.group(0)

    for manifest in (chart / "files").rglob("*.yaml"):
        text = manifest.read_text()
        pinned = pattern.sub(replace, text)
        if pinned != text:
            manifest.write_text(pinned)
    return references


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".ripple" / "chart")
    parser.add_argument("--helm", default=shutil.which("helm") or str(REPO_ROOT / ".ripple/dist/bin/helm"))
    parser.add_argument(
        "--images-from-registry",
        action="store_true",
        help="image references by digest from the registry `make push` filled (ripple_delivery)",
    )
    arguments = parser.parse_args()
    chart = assemble(arguments.out)
    print(f"assembled {chart} from {len(manifest_files())} manifest files")
    if arguments.images_from_registry:
        from ripple_delivery.config import ImageError

        try:
            pinned = pin_images(chart)
        except ImageError as error:
            print(f"ripple: {error}", file=sys.stderr)
            return 2
        for name, reference in pinned.items():
            print(f"image {name}: {reference}")
    if not Path(arguments.helm).exists():
        print(HELM_HINT, file=sys.stderr)
        return 2
    for command in (["lint", str(chart)], ["package", str(chart), "--destination", str(arguments.out)]):
        result = subprocess.run([arguments.helm, *command], text=True, capture_output=True)
        print(result.stdout.strip())
        if result.returncode != 0:
            print(result.stderr.strip(), file=sys.stderr)
            return result.returncode
    if arguments.images_from_registry:
        # What the cluster would get, for review: every manifest with the pinned images.
        template = [arguments.helm, "template", "ripple", str(chart)]
        rendered = subprocess.run(template, text=True, capture_output=True)
        if rendered.returncode != 0:
            print(rendered.stderr.strip(), file=sys.stderr)
            return rendered.returncode
        (arguments.out / "rendered.yaml").write_text(rendered.stdout)
        print(f"rendered {arguments.out / 'rendered.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
