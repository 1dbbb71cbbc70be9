"""The gateway's min-scale is a Helm value: scale to zero by default, one warm pod on request."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ripple_stack.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "infra" / "helm"))
from build_chart import assemble

PINNED_HELM = REPO_ROOT / ".ripple" / "dist" / "bin" / "helm"
HELM = str(PINNED_HELM) if PINNED_HELM.exists() else shutil.which("helm") or str(PINNED_HELM)
MIN_SCALE = "autoscaling.knative.dev/min-scale"


def min_scales(tmp_path: Path, *values: str) -> dict[str, str]:
    if not Path(HELM).exists():
        pytest.skip("helm is missing: `make helm` installs it with go install")
    chart = assemble(tmp_path)
    arguments = [item for value in values for item in ("--set", value)]
    rendered = subprocess.run(
        [HELM, "template", "shop", str(chart), *arguments], capture_output=True, text=True, check=True
    ).stdout
    return {
        document["metadata"]["name"]: document["spec"]["template"]["metadata"]["annotations"][MIN_SCALE]
        for document in yaml.safe_load_all(rendered)
        if document and document.get("kind") == "Service" and "serving.knative.dev" in document["apiVersion"]
    }


def test_every_function_scales_to_zero_by_default(tmp_path) -> None:
    scales = min_scales(tmp_path)
    assert scales and set(scales.values()) == {"0"}, scales


def test_min_scale_of_the_gateway_is_a_value(tmp_path) -> None:
    scales = min_scales(tmp_path, "minScale.gateway=1")
    assert scales.pop("gateway") == "1"
    assert set(scales.values()) == {"0"}
