"""The activator, autoscaler and instances with real processes: count and compare, never time.

Each test runs a real activator on private ports with the tiny function of tiny/service.yaml and
config-autoscaler overrides that make a window 6 s and the grace period 1 s.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from serving_helpers import activator, tiny_spec


def test_min_scale_0_reaches_zero_after_its_retention(tmp_path) -> None:
    annotations = {"initial-scale": "1", "scale-to-zero-pod-retention-period": "2s"}
    with activator(tmp_path, annotations) as running:
        running.wait_for(lambda s: s["instances_ready"] == 1, "initial scale")
        status = running.wait_for(lambda s: s["scaled_to_zero"], "scale to zero")
        assert status["instances"] == []
        assert [c["reason"] for c in running.cold_starts()] == ["initial"]


def test_min_scale_1_never_goes_below_one(tmp_path) -> None:
    with activator(tmp_path, {"min-scale": "1"}) as running:
        running.wait_for(lambda s: s["instances_ready"] == 1, "min-scale instance")
        seen = set()
        # A full stable window plus the grace period, twice over: it would have gone by then.
        end = time.monotonic() + 15
        while time.monotonic() < end:
            seen.add(running.status()["instances_ready"])
            time.sleep(0.2)
        assert seen == {1}


def test_a_request_at_zero_is_held_answered_and_starts_one_instance(tmp_path) -> None:
    with activator(tmp_path, env={"STARTUP_DELAY": "0.5"}) as running:
        assert running.status()["scaled_to_zero"]
        status, _, body = running.request("/work")
        assert status == 200 and body["concurrency"] == 1
        starts = running.cold_starts()
        assert len(starts) == 1
        assert starts[0]["reason"] == "request" and starts[0]["first_request_wait_s"] >= starts[0]["ready_s"]
        assert set(starts[0]) >= {"function", "instance", "started_at", "ready_s", "first_request_wait_s"}
        assert len(running.status()["instances"]) == 1
        assert "ripple_serving_cold_starts_total" in running.metrics()


def test_the_pod_start_model_is_waited_before_the_process_starts(tmp_path, monkeypatch) -> None:
    """RIPPLE_SERVING_POD_START_MS (off by default): the time a Knative pod spends before its
    container's exec is waited before the instance's process starts; the held request waits it
    too, exec -> ready does not include it."""
    monkeypatch.setenv("RIPPLE_SERVING_POD_START_MS", "1500")
    with activator(tmp_path) as running:
        status, _, _ = running.request("/work")
        assert status == 200
        (start,) = running.cold_starts()
        assert start["first_request_wait_s"] >= start["ready_s"] + 1.5


def test_a_bad_pod_start_setting_stops_the_activator_with_what_to_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RIPPLE_SERVING_POD_START_MS", "soon")
    result = subprocess.run(
        [sys.executable, "-m", "knative_standins.serving.activator", "--spec", str(tiny_spec(tmp_path)[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RIPPLE_SERVING_POD_START_MS" in result.stderr


def test_concurrent_requests_during_a_cold_start_are_all_answered(tmp_path) -> None:
    with activator(tmp_path, env={"STARTUP_DELAY": "1"}) as running:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: running.request("/work?sleep=0.2"), range(12)))
        assert [a[0] for a in answers] == [200] * 12
        assert max(a[2]["concurrency"] for a in answers) <= 2  # containerConcurrency


def test_sustained_load_scales_out_within_max_scale_and_container_concurrency(tmp_path) -> None:
    with activator(tmp_path) as running:
        peak = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                status = running.status()
                peak.append(len(status["instances"]))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: running.request("/work?sleep=0.3"), range(240)))
        stop.set()
        sampler.join()
        assert [a[0] for a in answers] == [200] * 240
        assert max(a[2]["concurrency"] for a in answers) <= 2  # never above containerConcurrency
        assert 1 < max(peak) <= 3  # scaled out, never beyond max-scale
        assert len({a[2]["pid"] for a in answers}) > 1
        metrics = running.metrics()
        assert 'activator_request_count{namespace_name="ripple-tests"' in metrics
        assert "autoscaler_desired_pods" in metrics and "autoscaler_panic_mode" in metrics


def test_scale_down_never_cuts_an_in_flight_request(tmp_path) -> None:
    with activator(tmp_path) as running:
        with ThreadPoolExecutor(16) as pool:
            warm = list(pool.map(lambda _: running.request("/work?sleep=0.3"), range(120)))
        assert {a[0] for a in warm} == {200}
        assert running.status()["instances_ready"] > 1
        # Long requests while the load is gone: the autoscaler scales down under them.
        with ThreadPoolExecutor(3) as pool:
            long = [pool.submit(running.request, "/work?sleep=6") for _ in range(3)]
            running.wait_for(
                lambda s: s["instances_terminating"] > 0 or s["instances_ready"] == 1, "scale down"
            )
            answers = [future.result() for future in long]
        assert [a[0] for a in answers] == [200, 200, 200]
        running.wait_for(lambda s: s["scaled_to_zero"], "scale to zero")


def test_a_function_whose_command_fails_gets_503_problem_json(tmp_path) -> None:
    with activator(tmp_path, env={"FAIL": "1"}, timeoutSeconds=3) as running:
        status, headers, body = running.request("/work")
        assert status == 503
        assert headers["Content-Type"].startswith("application/problem+json")
        assert headers["Retry-After"] == "1"
        assert "exited with code 3" in body["detail"]
        assert "exited with code 3" in running.status()["last_failure"]
