"""scenarios/cpu.py: each program's CPU between two snapshots, and the report's section."""

from __future__ import annotations

import os

import pytest

from loadtest.scenarios.cpu import (
    Meter,
    Usage,
    WaitSampler,
    cpu_section,
    machine_busy_seconds,
    thread_schedstats,
    tree_cpu_seconds,
    usage,
    waited_ns,
)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            {"kafka": (10, 5.0)}, {"kafka": (10, 12.5)}, [Usage("kafka", 7.5, False)], id="same process"
        ),
        pytest.param(
            {"trigger-notifier": (10, 5.0)},
            {"trigger-notifier": (11, 2.0)},
            [Usage("trigger-notifier", 2.0, True)],
            id="killed and restarted: its new process only",
        ),
        pytest.param(
            {}, {"mail-sink": (3, 1.0)}, [Usage("mail-sink", 1.0, True)], id="started during the run"
        ),
        pytest.param({"nginx": (4, 1.0)}, {}, [], id="stopped at the end: not counted"),
        pytest.param(
            {"a": (1, 1.0), "b": (2, 1.0)},
            {"a": (1, 2.0), "b": (2, 4.0)},
            [Usage("b", 3.0, False), Usage("a", 1.0, False)],
            id="most first",
        ),
        pytest.param({"a": (1, 3.0)}, {"a": (1, 2.0)}, [Usage("a", 0.0, False)], id="never negative"),
    ],
)
def test_usage(before, after, expected):
    assert usage(before, after) == expected


def test_the_section_names_programs_per_event_and_the_rest_of_the_machine():
    rows = [Usage("notifier", 60.0, False), Usage("trigger-notifier", 20.0, True), Usage("mtail", 0.5, False)]
    section = cpu_section(rows, machine_s=100.0, wall_s=100.0, events=10_000, cores=2)
    assert "| notifier | 60.0 | 6.00 | 60.0 % |" in section
    assert "| trigger-notifier (restarted: from its new start) | 20.0 | 2.00 | 20.0 % |" in section
    assert "| 1 other programs | 0.5 | 0.05 | |" in section  # below 1 % of the machine's busy CPU
    assert "| **the stack's programs** | **80.5** | **8.05** | |" in section
    assert "| anything else on the machine (kernel, other jobs) | 19.5 | | |" in section
    assert "| the machine, busy | 100.0 | | 50 % of 2 cores |" in section


def test_the_scenario_process_gets_its_own_row_and_leaves_the_rest_to_anything_else():
    rows = [Usage("notifier", 60.0, False)]
    section = cpu_section(rows, machine_s=100.0, wall_s=100.0, events=10_000, cores=2, driver_s=15.0)
    assert "| the scenario's own process (load, probes) | 15.0 | 1.50 | |" in section
    assert "| anything else on the machine (kernel, other jobs) | 25.0 | | |" in section


def test_no_events_accepted_gives_no_per_event_figure():
    section = cpu_section([Usage("kafka", 1.0, False)], machine_s=2.0, wall_s=10.0, events=0, cores=2)
    assert "| kafka | 1.0 | - | 50.0 % |" in section


def test_this_process_and_the_machine_have_used_some_cpu():
    assert tree_cpu_seconds(os.getpid()) > 0
    assert tree_cpu_seconds(2**22 + 12345) is None  # no such process
    assert machine_busy_seconds() > 0


def test_meter_reads_the_programs_between_start_and_stop() -> None:
    meter = Meter(lambda: {"this-test": os.getpid()})
    meter.start()
    sum(range(200_000))  # some CPU of this process between the readings
    meter.stop(events=1000)
    assert meter.section and "## Where the CPU went" in meter.section[0]
    assert "per event accepted (1000)" in meter.section[0]
    assert "| the scenario's own process (load, probes) |" in meter.section[0]


def test_meter_leaves_the_section_out_when_it_cannot_read() -> None:
    def no_supervisor() -> dict[str, int]:
        raise ConnectionRefusedError("supervisord is not running")

    meter = Meter(no_supervisor)
    meter.start()
    meter.stop(events=10)
    assert meter.section == []


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        pytest.param(None, {1: (10, 50)}, 0, id="first reading: a baseline"),
        pytest.param({1: (10, 50)}, {1: (20, 80)}, 30, id="same thread"),
        pytest.param({1: (10, 50)}, {1: (20, 80), 2: (5, 7)}, 37, id="a new thread counts from its start"),
        pytest.param({1: (10, 50), 2: (5, 7)}, {2: (6, 9)}, 2, id="an exited thread: its last interval lost"),
        pytest.param({1: (10, 50)}, {1: (10, 40)}, 0, id="never negative (a reused thread id)"),
    ],
)
def test_waited_ns(last, now, expected):
    assert waited_ns(last, now) == expected


def test_thread_schedstats_reads_every_thread_of_a_process():
    stats = thread_schedstats([os.getpid()])
    assert os.getpid() in stats  # the main thread's id is the process id
    assert all(on_cpu >= 0 and waiting >= 0 for on_cpu, waiting in stats.values())


def test_the_wait_sampler_sums_a_programs_waits_until_stopped():
    sampler = WaitSampler(lambda: {"me": os.getpid(), "gone": 0}, interval_s=0.01)
    sampler.start()
    sum(range(2_000_000))
    waits = sampler.stop()
    assert set(waits) == {"me"} and waits["me"] >= 0.0


def test_the_section_gives_each_programs_wait_for_a_cpu_when_sampled():
    rows = [Usage("broker", 10.0, False), Usage("kafka", 20.0, False), Usage("mtail", 0.1, False)]
    waits = {"broker": 800.0, "kafka": 100.0, "mtail": 1.0}
    section = cpu_section(rows, machine_s=100.0, wall_s=100.0, events=1000, cores=2, waits=waits)
    assert "| share of the machine's busy CPU | waited for a CPU, s (per CPU s) |" in section
    assert "| broker | 10.0 | 10.00 | 10.0 % | 800.0 (80.0) |" in section
    assert "| 1 other programs | 0.1 | 0.10 | | 1.0 (10.0) |" in section
    assert "| **the stack's programs** | **30.1** | **30.10** | | 901.0 (29.9) |" in section
    assert "waited for a CPU" not in cpu_section(rows, machine_s=100.0, wall_s=100.0, events=1000, cores=2)
