"""The KPA decision: how many instances a revision should have, as a pure function of time.

`decide(spec, stable, panic, ready, now, state)` is Knative's autoscaler.Scale
(pkg/autoscaler/scaling/autoscaler.go) followed by what the KPA reconciler does with its answer
(pkg/reconciler/autoscaling/kpa/scaler.go): initial scale, min/max bounds and the scale-to-zero
rules. Time and the observed metric are passed in and the state comes back new, so the unit tests
replay scenarios tick by tick without clocks or processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .config import RevisionSpec


@dataclass(frozen=True)
class DeciderState:
    # Panic mode: when it was last confirmed, and the most instances asked for while in it.
    panic_since: float | None = None
    max_panic_pods: int = 0
    # scale-down-delay: the decisions of the last delay window, (time, desired).
    recent: tuple[tuple[float, int], ...] = ()
    # Scale to zero: when the revision last became active (ready > 0) and inactive (wants 0).
    active_since: float | None = None
    inactive_since: float | None = None
    # initial-scale holds until it has been reached once.
    initial_reached: bool = False
    # Since when the activator has been in the revision's path (the SKS in Proxy mode). Here it
    # always is, from the first tick on, as with target-burst-capacity -1.
    proxy_since: float | None = None


@dataclass(frozen=True)
class Decision:
    desired: int  # what the scaler should run now
    autoscaler_desired: int  # the autoscaler's own answer, before bounds and zero rules
    panic: bool
    state: DeciderState = field(default_factory=DeciderState)


def decide(
    spec: RevisionSpec, stable: float, panic: float, ready: int, now: float, state: DeciderState
) -> Decision:
    """One tick. `stable`/`panic` are the observed totals (all instances) over each window."""
    # --- autoscaler.Scale ---
    ready_count = max(1.0, float(ready))
    # At least N -> N+1 up and N -> N-1 down, whatever the rates.
    max_scale_up = math.ceil(spec.max_scale_up_rate * ready_count)
    max_scale_down = math.floor(ready_count / spec.max_scale_down_rate)
    stable_pods = math.ceil(stable / spec.target_value)
    panic_pods = math.ceil(panic / spec.target_value)
    desired_stable = int(min(max(stable_pods, max_scale_down), max_scale_up))
    desired_panic = int(min(max(panic_pods, max_scale_down), max_scale_up))
    # activation-scale: any non-zero answer is at least that many (upstream applies it here,
    # after the rate bounds, so a revision at zero goes straight to it).
    if spec.activation_scale > 1:
        if stable_pods > 0:
            desired_stable = max(desired_stable, spec.activation_scale)
        if panic_pods > 0:
            desired_panic = max(desired_panic, spec.activation_scale)

    over_threshold = panic_pods / ready_count >= spec.panic_threshold
    panic_since, max_panic_pods = state.panic_since, state.max_panic_pods
    if over_threshold:
        # Begin panicking, or extend the panic while the surge lasts.
        panic_since = now
    elif panic_since is not None and panic_since + spec.stable_window_s < now:
        # The surge has made its way into the stable window: back to stable mode.
        panic_since, max_panic_pods = None, 0

    desired = desired_stable
    if panic_since is not None:
        # Provision for the larger of the two, and never scale down while panicking.
        desired = max(desired, desired_panic)
        max_panic_pods = max(max_panic_pods, desired)
        desired = max_panic_pods

    recent = state.recent
    if spec.scale_down_delay_s > 0:
        # The largest decision of the last delay window wins: scale-downs wait, scale-ups do not.
        recent = (*(r for r in recent if r[0] > now - spec.scale_down_delay_s), (now, desired))
        desired = max(value for _, value in recent)
    autoscaler_desired = desired

    # --- the KPA reconciler: initial scale, bounds, scale to zero ---
    initial_reached = state.initial_reached or ready >= spec.initial_scale
    if not initial_reached:
        desired = max(desired, spec.initial_scale)
    desired = max(desired, spec.min_scale)
    desired = min(desired, spec.effective_max_scale)

    active_since = state.active_since
    if ready > 0 and active_since is None:
        active_since = now
    elif ready == 0 and desired == 0:
        active_since = None
    proxy_since = now if state.proxy_since is None else state.proxy_since
    inactive_since = state.inactive_since
    if desired > 0:
        inactive_since = None
    elif not spec.enable_scale_to_zero:
        desired = 1
    elif ready > 0:
        # handleScaleToZero (pkg/reconciler/autoscaling/kpa/scaler.go), in two reconciles that
        # Knative runs within one autoscaler tick: while active for less than a stable window, 1.
        # Then the reconcile marks the PA inactive without scaling (it returns (0, false)); that
        # status update re-enqueues the PA through its own informer at once, and the next
        # reconcile, tens of ms later, takes the Active=False branch with the inactive time ~0.
        # It scales to zero once inactive for max(grace, retention), or, once inactive for the
        # retention period (0 by default), with the activator in the path for the grace period
        # (its "fast path"): the cluster logged "Can deactivate PA" -> "Fast path scaling to 0" ->
        # "Scaling from 1 to 0" within 40 ms. So both happen here in the same tick.
        if active_since is not None and now - active_since < spec.stable_window_s:
            desired = 1
        else:
            if inactive_since is None:
                inactive_since = now
            grace = spec.scale_to_zero_grace_period_s
            retention = spec.scale_to_zero_pod_retention_period_s
            inactive_for, proxy_for = now - inactive_since, now - proxy_since
            if inactive_for < max(grace, retention) and (inactive_for < retention or proxy_for < grace):
                desired = 1
    return Decision(
        desired=desired,
        autoscaler_desired=autoscaler_desired,
        panic=panic_since is not None,
        state=replace(
            state,
            panic_since=panic_since,
            max_panic_pods=max_panic_pods,
            recent=recent,
            active_since=active_since,
            inactive_since=inactive_since,
            initial_reached=initial_reached,
            proxy_since=proxy_since,
        ),
    )
