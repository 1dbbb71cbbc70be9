"""The alert rules load in Prometheus: promtool accepts the groups of every PrometheusRule."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ripple_stack.components.prometheus import write_rule_files


def test_every_prometheus_rule_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool comes with the Debian prometheus package: run `make prereqs`")
    files = write_rule_files(tmp_path)
    assert files, "no PrometheusRule found under infra/prometheus/rules"
    result = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
