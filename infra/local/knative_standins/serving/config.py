"""Knative Serving's autoscaling settings: the cluster-wide `config-autoscaler` and per revision.

`load_autoscaler_config` reads the one local ConfigMap (config-autoscaler.yaml next to this
file) with Knative's defaults and validation rules (pkg/autoscaler/config/config.go);
`revision_spec` resolves a Service manifest's `autoscaling.knative.dev/*` annotations,
`containerConcurrency` and `timeoutSeconds` against it into the `RevisionSpec` the decider and
the activator use (pkg/reconciler/autoscaling/resources/target.go for the target). Anything
Knative would reject, or that the local stand-in does not do (class hpa, metric cpu), is a
`ServingConfigError` naming the file and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import ConfigError

CONFIG_FILE = Path(__file__).with_name("config-autoscaler.yaml")
ANNOTATION_PREFIX = "autoscaling.knative.dev/"
KPA_CLASS = "kpa.autoscaling.knative.dev"
# Knative's bounds (pkg/apis/autoscaling/register.go).
WINDOW_MIN_S, WINDOW_MAX_S = 6.0, 3600.0
PANIC_WINDOW_PERCENTAGE_RANGE = (1.0, 100.0)
PANIC_THRESHOLD_PERCENTAGE_RANGE = (110.0, 1000.0)
TARGET_UTILIZATION_RANGE = (1.0, 100.0)
SCALE_DOWN_DELAY_MAX_S = 3600.0
# config-defaults' revision-timeout-seconds.
DEFAULT_TIMEOUT_S = 300
# Each function gets a block of this many instance ports locally, so max-scale is capped here.
LOCAL_MAX_SCALE = 32


class ServingConfigError(ConfigError):
    """An autoscaling setting Knative would reject or the local stand-in does not support."""


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go duration ("60s", "1m30s", "500ms") in seconds; ValueError when it is not one."""
    text = text.strip()
    if text in ("0", ""):
        if text == "":
            raise ValueError("empty duration")
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise ValueError(f"{text!r} is not a duration such as 60s, 1m30s or 500ms")
    return total


@dataclass(frozen=True)
class AutoscalerConfig:
    """The data of config-autoscaler, parsed (fractions as Knative keeps them internally)."""

    container_concurrency_target_fraction: float = 0.7
    container_concurrency_target_default: float = 100.0
    target_utilization: float = 0.7
    rps_target_default: float = 200.0
    target_burst_capacity: float = 200.0
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    enable_scale_to_zero: bool = True
    tick_interval_s: float = 2.0
    scale_to_zero_grace_period_s: float = 30.0
    scale_to_zero_pod_retention_period_s: float = 0.0
    scale_down_delay_s: float = 0.0
    pod_autoscaler_class: str = KPA_CLASS
    initial_scale: int = 1
    allow_zero_initial_scale: bool = False
    max_scale: int = 0
    max_scale_limit: int = 0
    activator_capacity: float = 100.0


_FLOATS = {
    "container-concurrency-target-percentage": "container_concurrency_target_fraction",
    "container-concurrency-target-default": "container_concurrency_target_default",
    "requests-per-second-target-default": "rps_target_default",
    "target-burst-capacity": "target_burst_capacity",
    "panic-window-percentage": "panic_window_percentage",
    "panic-threshold-percentage": "panic_threshold_percentage",
    "max-scale-up-rate": "max_scale_up_rate",
    "max-scale-down-rate": "max_scale_down_rate",
    "activator-capacity": "activator_capacity",
}
_DURATIONS = {
    "stable-window": "stable_window_s",
    "tick-interval": "tick_interval_s",
    "scale-to-zero-grace-period": "scale_to_zero_grace_period_s",
    "scale-to-zero-pod-retention-period": "scale_to_zero_pod_retention_period_s",
    "scale-down-delay": "scale_down_delay_s",
}
_INTS = {"initial-scale": "initial_scale", "max-scale": "max_scale", "max-scale-limit": "max_scale_limit"}
_BOOLS = {
    "enable-scale-to-zero": "enable_scale_to_zero",
    "allow-zero-initial-scale": "allow_zero_initial_scale",
}


def parse_autoscaler_config(data: Mapping[str, str], where: str) -> AutoscalerConfig:
    """config-autoscaler's data -> AutoscalerConfig, validated as Knative validates it."""
    values: dict[str, object] = {}
    for key, raw in data.items():
        text = str(raw).strip()
        try:
            if key in _FLOATS:
                values[_FLOATS[key]] = float(text)
            elif key in _DURATIONS:
                values[_DURATIONS[key]] = parse_duration(text)
            elif key in _INTS:
                values[_INTS[key]] = int(text)
            elif key in _BOOLS:
                if text.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                values[_BOOLS[key]] = text.lower() == "true"
            elif key == "pod-autoscaler-class":
                values["pod_autoscaler_class"] = text
            else:
                raise ServingConfigError(f"{where}: config-autoscaler key {key!r} is not supported locally.")
        except ValueError as error:
            raise ServingConfigError(f"{where}: config-autoscaler {key}={text!r}: {error}") from None
    # Knative accepts 70 or 0.7 for the percentage and keeps a fraction.
    fraction = float(values.get("container_concurrency_target_fraction", 0.7))  # type: ignore[arg-type]
    if fraction > 1.0:
        values["container_concurrency_target_fraction"] = fraction / 100.0
    values["target_utilization"] = values.get("container_concurrency_target_fraction", 0.7)
    config = AutoscalerConfig(**values)  # type: ignore[arg-type]
    _validate_config(config, where)
    return config


def _validate_config(c: AutoscalerConfig, where: str) -> None:
    problems = []
    if c.pod_autoscaler_class != KPA_CLASS:
        problems.append(f"pod-autoscaler-class {c.pod_autoscaler_class!r}: only {KPA_CLASS} runs locally")
    if c.scale_to_zero_grace_period_s <= 0:
        problems.append("scale-to-zero-grace-period must be positive")
    if c.scale_down_delay_s < 0 or c.scale_to_zero_pod_retention_period_s < 0:
        problems.append("scale-down-delay and scale-to-zero-pod-retention-period cannot be negative")
    if c.target_burst_capacity < 0 and c.target_burst_capacity != -1:
        problems.append("target-burst-capacity must be non-negative or -1")
    if not 0 < c.container_concurrency_target_fraction <= 1:
        problems.append("container-concurrency-target-percentage must be in (0, 100]")
    if c.max_scale_up_rate <= 1 or c.max_scale_down_rate <= 1:
        problems.append("max-scale-up-rate and max-scale-down-rate must be greater than 1.0")
    if not WINDOW_MIN_S <= c.stable_window_s <= WINDOW_MAX_S or c.stable_window_s != round(c.stable_window_s):
        problems.append("stable-window must be whole seconds in [6s, 1h]")
    if not PANIC_WINDOW_PERCENTAGE_RANGE[0] <= c.panic_window_percentage <= PANIC_WINDOW_PERCENTAGE_RANGE[1]:
        problems.append("panic-window-percentage must be in [1, 100]")
    if c.initial_scale < 0 or (c.initial_scale == 0 and not c.allow_zero_initial_scale):
        problems.append("initial-scale must be at least 1 (0 needs allow-zero-initial-scale: true)")
    if c.max_scale < 0 or (c.max_scale_limit > 0 and not 1 <= c.max_scale <= c.max_scale_limit):
        problems.append("max-scale must be in [0, max-scale-limit]")
    if c.tick_interval_s <= 0:
        problems.append("tick-interval must be positive")
    if problems:
        raise ServingConfigError(f"{where}: " + "; ".join(problems) + ".")


def load_autoscaler_config(
    path: Path = CONFIG_FILE, overrides: Mapping[str, str] | None = None
) -> AutoscalerConfig:
    """The ConfigMap's data (plus overrides, used by tests for short windows), parsed."""
    try:
        document = yaml.safe_load(path.read_text())
        data = dict(document["data"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise ServingConfigError(f"{path}: cannot read config-autoscaler ({error}).") from None
    data.update(overrides or {})
    return parse_autoscaler_config(data, str(path))


@dataclass(frozen=True)
class RevisionSpec:
    """Everything the decider and the activator need about one revision (one function)."""

    metric: str  # concurrency | rps
    target_value: float  # what one instance should carry: target x utilization
    total_value: float  # what one instance can carry at most (burst capacity math)
    min_scale: int
    max_scale: int  # 0 = unbounded (capped at LOCAL_MAX_SCALE locally)
    initial_scale: int
    stable_window_s: float
    panic_window_s: float
    panic_threshold: float  # ratio: desired panic pods / ready pods that starts panic mode
    max_scale_up_rate: float
    max_scale_down_rate: float
    scale_down_delay_s: float
    enable_scale_to_zero: bool
    scale_to_zero_grace_period_s: float
    scale_to_zero_pod_retention_period_s: float
    tick_interval_s: float
    container_concurrency: int  # 0 = unlimited
    timeout_s: float
    # activation-scale: the fewest instances a revision runs once it runs any (1 = no such floor).
    activation_scale: int = 1

    @property
    def effective_max_scale(self) -> int:
        return self.max_scale or LOCAL_MAX_SCALE


_KNOWN_ANNOTATIONS = {
    "class",
    "metric",
    "min-scale",
    "max-scale",
    "initial-scale",
    "activation-scale",
    "target",
    "target-utilization-percentage",
    "window",
    "panic-window-percentage",
    "panic-threshold-percentage",
    "scale-down-delay",
    "scale-to-zero-pod-retention-period",
}


def revision_spec(manifest: Mapping, where: str, config: AutoscalerConfig) -> RevisionSpec:
    """A Service manifest's revision template -> RevisionSpec (errors name `where` and the key)."""
    template = (manifest.get("spec") or {}).get("template") or {}
    annotations = {
        key[len(ANNOTATION_PREFIX) :]: str(value)
        for key, value in ((template.get("metadata") or {}).get("annotations") or {}).items()
        if key.startswith(ANNOTATION_PREFIX)
    }
    pod_spec = template.get("spec") or {}

    def fail(key: str, value: object, why: str) -> ServingConfigError:
        return ServingConfigError(f"{where}: annotation {ANNOTATION_PREFIX}{key}={value!r}: {why}.")

    for key in annotations:
        if key not in _KNOWN_ANNOTATIONS:
            raise fail(key, annotations[key], "not supported by the local autoscaler (see serving/README.md)")

    def number(key: str, kind: type, low: float, high: float) -> float | None:
        if key not in annotations:
            return None
        raw = annotations[key]
        try:
            value = kind(raw)
        except ValueError:
            raise fail(key, raw, f"expected {'an integer' if kind is int else 'a number'}") from None
        if not low <= value <= high or (isinstance(value, float) and math.isnan(value)):
            raise fail(key, raw, f"must be in [{low:g}, {high:g}]")
        return value

    def duration(key: str, low: float, high: float, whole: bool) -> float | None:
        if key not in annotations:
            return None
        raw = annotations[key]
        try:
            value = parse_duration(raw)
        except ValueError as error:
            raise fail(key, raw, str(error)) from None
        if not low <= value <= high or (whole and value != round(value)):
            raise fail(key, raw, f"must be {'whole seconds ' if whole else ''}in [{low:g}s, {high:g}s]")
        return value

    klass = annotations.get("class", config.pod_autoscaler_class)
    if klass != KPA_CLASS:
        raise fail("class", klass, f"only {KPA_CLASS} runs locally (hpa needs a cluster)")
    metric = annotations.get("metric", "concurrency")
    if metric not in ("concurrency", "rps"):
        raise fail("metric", metric, "the KPA scales on concurrency or rps (cpu and memory need the HPA)")

    try:
        container_concurrency = int(pod_spec.get("containerConcurrency", 0) or 0)
        timeout_s = float(pod_spec.get("timeoutSeconds", DEFAULT_TIMEOUT_S))
    except (TypeError, ValueError):
        raise ServingConfigError(
            f"{where}: spec.template.spec.containerConcurrency and timeoutSeconds must be numbers."
        ) from None
    if not 0 <= container_concurrency <= 1000:
        raise ServingConfigError(f"{where}: spec.template.spec.containerConcurrency must be in [0, 1000].")
    if timeout_s <= 0:
        raise ServingConfigError(f"{where}: spec.template.spec.timeoutSeconds must be positive.")

    min_scale = int(number("min-scale", int, 0, LOCAL_MAX_SCALE) or 0)
    max_scale = int(number("max-scale", int, 0, LOCAL_MAX_SCALE) or config.max_scale)
    if max_scale and min_scale > max_scale:
        raise fail("min-scale", min_scale, f"is above max-scale {max_scale}")
    low_initial = 0 if config.allow_zero_initial_scale else 1
    initial = number("initial-scale", int, low_initial, LOCAL_MAX_SCALE)
    initial_scale = int(config.initial_scale if initial is None else initial)
    # ValidateAnnotations (pkg/apis/autoscaling/annotation_validation.go): min <= activation <= max.
    activation = number("activation-scale", int, 2, LOCAL_MAX_SCALE)
    activation_scale = int(activation or 1)
    if activation is not None and min_scale > activation_scale:
        raise fail("activation-scale", activation_scale, f"is below min-scale {min_scale}")
    if activation is not None and max_scale and activation_scale > max_scale:
        raise fail("activation-scale", activation_scale, f"is above max-scale {max_scale}")

    # ResolveMetricTarget: total is what one pod may carry, target = total x utilization.
    if metric == "rps":
        total, utilization = config.rps_target_default, config.target_utilization
    else:
        total = float(container_concurrency or config.container_concurrency_target_default)
        utilization = config.container_concurrency_target_fraction
    annotated_target = number("target", float, 0.01, 1e9)
    if annotated_target is not None:
        total = annotated_target
        if metric == "concurrency" and container_concurrency:
            total = min(annotated_target, float(container_concurrency))
    annotated_utilization = number("target-utilization-percentage", float, *TARGET_UTILIZATION_RANGE)
    if annotated_utilization is not None:
        utilization = annotated_utilization / 100.0
    target_value = max(1.0, total * utilization)

    stable_window = duration("window", WINDOW_MIN_S, WINDOW_MAX_S, True) or config.stable_window_s
    panic_percentage = number("panic-window-percentage", float, *PANIC_WINDOW_PERCENTAGE_RANGE)
    panic_percentage = config.panic_window_percentage if panic_percentage is None else panic_percentage
    # The panic window is rounded to whole seconds, at least one bucket (1 s).
    panic_window = max(1.0, round(stable_window * panic_percentage / 100.0))
    threshold = number("panic-threshold-percentage", float, *PANIC_THRESHOLD_PERCENTAGE_RANGE)
    threshold = config.panic_threshold_percentage if threshold is None else threshold
    delay = duration("scale-down-delay", 0, SCALE_DOWN_DELAY_MAX_S, True)
    retention = duration("scale-to-zero-pod-retention-period", 0, 3600, False)
    return RevisionSpec(
        metric=metric,
        target_value=target_value,
        total_value=total,
        min_scale=min_scale,
        max_scale=max_scale,
        initial_scale=initial_scale,
        stable_window_s=stable_window,
        panic_window_s=panic_window,
        panic_threshold=threshold / 100.0,
        max_scale_up_rate=config.max_scale_up_rate,
        max_scale_down_rate=config.max_scale_down_rate,
        scale_down_delay_s=config.scale_down_delay_s if delay is None else delay,
        enable_scale_to_zero=config.enable_scale_to_zero,
        scale_to_zero_grace_period_s=config.scale_to_zero_grace_period_s,
        scale_to_zero_pod_retention_period_s=(
            config.scale_to_zero_pod_retention_period_s if retention is None else retention
        ),
        tick_interval_s=config.tick_interval_s,
        container_concurrency=container_concurrency,
        timeout_s=timeout_s,
        activation_scale=activation_scale,
    )
