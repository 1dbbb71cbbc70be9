"""python -m loadtest.scenarios <name> [options]: run one failure scenario and write its report.

Run from the repository root with the project's venv (`make scenario-<name>` does that).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loadtest.cli import options_from, setup_logging
from ripple_stack.batch_runs import push_run
from ripple_stack.component import PrerequisiteError

from .config import load_config
from .runner import SCENARIOS, Options, recheck, run_scenario
from .shop import TokenError


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scenarios",
        description="Break one part of the local stack under load, restore it, check that nothing "
        "answered 202 was lost or counted twice, and write a report under loadtest/reports/.",
    )
    parser.add_argument(
        "scenario",
        choices=[*sorted(SCENARIOS), "recheck"],
        help="which failure to drill; `recheck <report-dir>` verifies a finished run again",
    )
    parser.add_argument("directory", nargs="?", type=Path, help="recheck: the run's report directory")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests/s of the steady load")
    parser.add_argument(
        "--before", dest="before_s", type=float, default=defaults.before_s, help="seconds of load before"
    )
    parser.add_argument(
        "--failure",
        dest="failure_s",
        type=float,
        default=None,
        help="seconds the part stays broken (default per scenario)",
    )
    parser.add_argument(
        "--after",
        dest="after_s",
        type=float,
        default=defaults.after_s,
        help="seconds of load after the restart",
    )
    parser.add_argument(
        "--drain-timeout",
        dest="drain_timeout_s",
        type=float,
        default=defaults.drain_timeout_s,
        help="seconds to wait for the backlog",
    )
    parser.add_argument(
        "--overload-rate", type=float, default=defaults.overload_rate, help="overload: requests/s"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="sender threads")
    parser.add_argument("-v", "--verbose", action="store_true")
    arguments = parser.parse_args(argv)
    setup_logging(arguments.verbose)
    if arguments.scenario == "recheck":
        if arguments.directory is None:
            parser.error("recheck needs a run's report directory, e.g. loadtest/reports/flink-down-<time>")
        section, passed = recheck(arguments.directory, load_config())
        print(section)
        return 0 if passed else 1
    options = options_from(Options, arguments)
    scenario = SCENARIOS[arguments.scenario]
    if arguments.failure_s is not None and scenario.failure_s is not None:
        # An explicit --failure wins over the scenario's own default.
        from dataclasses import replace

        SCENARIOS[arguments.scenario] = replace(scenario, failure_s=arguments.failure_s)
    job, started = f"scenario-{arguments.scenario}", time.monotonic()
    try:
        _, summary = run_scenario(arguments.scenario, load_config(), options)
    except KeyboardInterrupt:
        print("interrupted: the broken component was restored; no report written", file=sys.stderr)
        return 130
    except (PrerequisiteError, TokenError) as error:
        # A component that does not come back, or Keycloak refusing tokens: what to do, no traceback.
        print(f"loadtest: {arguments.scenario} aborted: {error}", file=sys.stderr)
        push_run(job, duration_s=time.monotonic() - started, passed=False)
        return 2
    print(summary)
    push_run(job, duration_s=time.monotonic() - started, passed="verdict: PASS" in summary)
    if "verdict: PASS" in summary:
        return 0
    return 3 if "verdict: INCONCLUSIVE" in summary else 1


if __name__ == "__main__":
    sys.exit(main())
