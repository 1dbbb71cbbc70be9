"""python -m loadtest.scenarios <name> [options]: run one failure scenario and write its report.

Run from the repository root with the project's venv (`make scenario-<name>` does that).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from loadtest.cli import add_seconds, setup_logging
from ripple_stack.batch_runs import push_run
from ripple_stack.component import PrerequisiteError

from .burstplan import QUICK, BurstOptions
from .config import load_burst_options, load_config
from .runner import SCENARIOS, Options, recheck, run_scenario
from .shop import TokenError

BURSTS_DRAIN_S = 600.0  # the bursts' backlog includes the notifications of a PostgreSQL outage


def _burst_options(arguments: argparse.Namespace) -> BurstOptions:
    """The bursts' sizes: --quick's, or the options (whose defaults are the environment's)."""
    if arguments.quick:
        chosen = QUICK
    else:
        chosen = replace(
            BurstOptions(),
            bursts=arguments.bursts,
            events=arguments.events,
            rate=arguments.burst_rate,
            batch=arguments.batch,
            order_share=arguments.order_share,
            flagged_share=arguments.flagged_share,
            gap_s=arguments.gap,
            delay_limit_s=arguments.delay_limit,
        )
    if arguments.postgres_down is not None:
        chosen = chosen.with_postgres_down(arguments.postgres_down)
    return chosen.validate()


def _parser(defaults: Options) -> argparse.ArgumentParser:
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
    add_seconds(parser, "--before", "before_s", defaults.before_s, "seconds of load before")
    add_seconds(
        parser, "--failure", "failure_s", None, "seconds the part stays broken (default per scenario)"
    )
    add_seconds(parser, "--after", "after_s", defaults.after_s, "seconds of load after the restart")
    add_seconds(
        parser,
        "--drain-timeout",
        "drain_timeout_s",
        None,
        f"seconds to wait for the backlog ({defaults.drain_timeout_s:g}; bursts: {BURSTS_DRAIN_S:g})",
    )
    parser.add_argument(
        "--overload-rate", type=float, default=defaults.overload_rate, help="overload: requests/s"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="sender threads")
    _add_burst_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _add_burst_arguments(parser: argparse.ArgumentParser) -> None:
    bursts = load_burst_options()
    group = parser.add_argument_group("bursts (issue 19's run; defaults from RIPPLE_LOADTEST_BURST*)")
    group.add_argument("--bursts", type=int, default=bursts.bursts, help="how many bursts")
    group.add_argument("--events", type=int, default=bursts.events, help="events in all bursts together")
    group.add_argument("--burst-rate", type=float, default=bursts.rate, help="events/s during a burst")
    group.add_argument("--batch", type=int, default=bursts.batch, help="events per request")
    group.add_argument(
        "--order-share", type=float, default=bursts.order_share, help="orders among the events"
    )
    group.add_argument(
        "--flagged-share", type=float, default=bursts.flagged_share, help="orders above the alert threshold"
    )
    group.add_argument(
        "--gap",
        type=float,
        default=None,
        help="seconds idle between bursts (default: until every function is at zero)",
    )
    group.add_argument(
        "--postgres-down", type=float, default=None, help="seconds PostgreSQL stays stopped in its burst (20)"
    )
    group.add_argument(
        "--delay-limit", type=float, default=bursts.delay_limit_s, help="order -> notification p99 limit, s"
    )
    group.add_argument(
        "--quick",
        action="store_true",
        help="a small run to try it: 3,000 events at 100/s, 10 s gaps (no wait for zero), "
        "PostgreSQL down 5 s",
    )


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = _parser(defaults)
    arguments = parser.parse_args(argv)
    setup_logging(arguments.verbose)
    if arguments.scenario == "recheck":
        if arguments.directory is None:
            parser.error("recheck needs a run's report directory, e.g. loadtest/reports/flink-down-<time>")
        section, passed = recheck(arguments.directory, load_config())
        print(section)
        return 0 if passed else 1
    # Not options_from: the bursts' own arguments (--bursts, --batch) are not Options' fields.
    options = Options(
        rate=arguments.rate,
        before_s=arguments.before_s,
        failure_s=arguments.failure_s if arguments.failure_s is not None else defaults.failure_s,
        after_s=arguments.after_s,
        drain_timeout_s=arguments.drain_timeout_s
        or (BURSTS_DRAIN_S if arguments.scenario == "bursts" else defaults.drain_timeout_s),
        overload_rate=arguments.overload_rate,
        workers=arguments.workers,
    )
    if arguments.scenario == "bursts":
        try:
            options.bursts = _burst_options(arguments)
        except ValueError as error:
            parser.error(str(error))
    scenario = SCENARIOS[arguments.scenario]
    if arguments.failure_s is not None and scenario.failure_s is not None:
        # An explicit --failure wins over the scenario's own default.
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
