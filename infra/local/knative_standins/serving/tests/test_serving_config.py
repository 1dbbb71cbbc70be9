"""config-autoscaler defaults and the per-revision annotations, as Knative resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from knative_standins.serving.config import (
    AutoscalerConfig,
    ServingConfigError,
    load_autoscaler_config,
    parse_duration,
    revision_spec,
)

REPO = Path(__file__).resolve().parents[5]


def manifest(annotations: dict[str, str], **pod_spec) -> dict:
    return {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {f"autoscaling.knative.dev/{k}": v for k, v in annotations.items()}
                },
                "spec": pod_spec,
            }
        }
    }


def test_the_local_configmap_holds_knatives_defaults() -> None:
    assert load_autoscaler_config() == AutoscalerConfig()


def test_config_overrides_and_bad_keys() -> None:
    assert load_autoscaler_config(overrides={"stable-window": "6s"}).stable_window_s == 6
    with pytest.raises(ServingConfigError, match="stable-window"):
        load_autoscaler_config(overrides={"stable-window": "5s"})
    with pytest.raises(ServingConfigError, match="not-a-key"):
        load_autoscaler_config(overrides={"not-a-key": "1"})


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("1m30s", 90), ("500ms", 0.5), ("0s", 0), ("1h", 3600), ("0", 0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("annotations", "pod_spec", "target"),
    [
        ({}, {}, 70.0),  # container-concurrency-target-default x 70 %
        ({}, {"containerConcurrency": 10}, 7.0),
        ({"target": "24", "target-utilization-percentage": "70"}, {"containerConcurrency": 32}, 16.8),
        ({"target": "20"}, {"containerConcurrency": 8}, 5.6),  # the smaller of target and cc
        ({"metric": "rps"}, {}, 140.0),
        ({"metric": "rps", "target": "50", "target-utilization-percentage": "100"}, {}, 50.0),
        ({"target": "1", "target-utilization-percentage": "10"}, {}, 1.0),  # at least 1
    ],
)
def test_target_resolution(annotations, pod_spec, target) -> None:
    spec = revision_spec(manifest(annotations, **pod_spec), "x.yaml", AutoscalerConfig())
    assert spec.target_value == pytest.approx(target)


def test_annotations_override_the_cluster_defaults() -> None:
    spec = revision_spec(
        manifest(
            {
                "min-scale": "1",
                "max-scale": "4",
                "initial-scale": "2",
                "activation-scale": "3",
                "window": "30s",
                "panic-window-percentage": "20",
                "panic-threshold-percentage": "150",
                "scale-down-delay": "15s",
                "scale-to-zero-pod-retention-period": "1m",
            },
            timeoutSeconds=15,
        ),
        "x.yaml",
        AutoscalerConfig(),
    )
    assert (spec.min_scale, spec.max_scale, spec.initial_scale, spec.activation_scale) == (1, 4, 2, 3)
    assert (spec.stable_window_s, spec.panic_window_s, spec.panic_threshold) == (30, 6, 1.5)
    assert (spec.scale_down_delay_s, spec.scale_to_zero_pod_retention_period_s, spec.timeout_s) == (
        15,
        60,
        15,
    )
    defaults = revision_spec(manifest({}), "x.yaml", AutoscalerConfig())
    assert (defaults.stable_window_s, defaults.panic_window_s, defaults.timeout_s) == (60, 6, 300)
    assert (defaults.initial_scale, defaults.scale_to_zero_grace_period_s) == (1, 30)


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({"metric": "cpu"}, "autoscaling.knative.dev/metric"),
        ({"class": "hpa.autoscaling.knative.dev"}, "autoscaling.knative.dev/class"),
        ({"window": "5s"}, "autoscaling.knative.dev/window"),
        ({"window": "soon"}, "autoscaling.knative.dev/window"),
        ({"target-utilization-percentage": "0"}, "target-utilization-percentage"),
        ({"min-scale": "3", "max-scale": "2"}, "autoscaling.knative.dev/min-scale"),
        ({"max-scale": "-1"}, "autoscaling.knative.dev/max-scale"),
        ({"initial-scale": "0"}, "autoscaling.knative.dev/initial-scale"),
        ({"panic-threshold-percentage": "100"}, "panic-threshold-percentage"),
        ({"activation-scale": "1"}, "autoscaling.knative.dev/activation-scale"),
        ({"activation-scale": "3", "min-scale": "4"}, "autoscaling.knative.dev/activation-scale"),
        ({"activation-scale": "3", "max-scale": "2"}, "autoscaling.knative.dev/activation-scale"),
        ({"activation-scale": "two"}, "autoscaling.knative.dev/activation-scale"),
    ],
)
def test_unsupported_values_name_the_file_and_the_annotation(annotations, named) -> None:
    with pytest.raises(ServingConfigError, match=r"svc\.yaml: annotation .*" + named):
        revision_spec(manifest(annotations), "svc.yaml", AutoscalerConfig())


def test_every_function_manifest_resolves() -> None:
    config = load_autoscaler_config()
    for path in sorted((REPO / "knative").glob("*/service.yaml")):
        spec = revision_spec(yaml.safe_load(path.read_text()), str(path), config)
        assert spec.min_scale == 0, f"{path}: every function scales to zero (the issue's design)"
        assert 1 <= spec.effective_max_scale <= 32
