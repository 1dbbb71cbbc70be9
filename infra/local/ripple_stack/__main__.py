"""ripple's local stack: `python -m ripple_stack up|down|clean|status|start|stop`.

The Makefile's targets call these verbs; they are also usable on their own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .component import PrerequisiteError
from .settings import ConfigError, load_settings
from .stack import ComponentStatus, Stack, status_rows_as_dicts

_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:5.0f}s] {message}", flush=True)


def instances(row: ComponentStatus) -> str:
    """A function's ready/desired instances (its autoscaler's view); "-" for other components."""
    if row.instances_ready is None:
        return "-"
    if row.scaled_to_zero:
        return "scaled to zero"
    return f"{row.instances_ready}/{row.instances_desired}"


def print_table(rows: list[ComponentStatus]) -> None:
    table = [("COMPONENT", "STATE", "READY", "INSTANCES", "MEMORY", "ADDRESS", "LOG")]
    for row in rows:
        ready = "yes" if row.ready else f"no: {row.detail}"
        memory = f"{row.resident_mib:.0f} MiB" if row.resident_mib else "-"
        table.append(
            (row.component, row.state, ready, instances(row), memory, row.address, ", ".join(row.logs))
        )
    total = sum(row.resident_mib for row in rows)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        )
    print(f"total resident memory of the stack: {total:.0f} MiB")


def flink_verb(stack: Stack, action: str, as_json: bool) -> int:
    from . import flink_job  # psycopg2 and kafka only when asked
    from .secrets import load_secrets

    settings = stack.settings
    try:
        if action == "status":
            report = flink_job.status(settings)
            if as_json:
                print(json.dumps(report, indent=2))
            else:
                for key, value in report.items():
                    print(f"{key:16} {json.dumps(value) if isinstance(value, dict) else value}")
            return 0 if report["state"] == "RUNNING" else 3
        secrets = load_secrets(settings)
        if action == "submit":
            flink_job.ensure_running(settings, secrets, say)
        elif action == "savepoint":
            flink_job.stop_with_savepoint(settings, say)
        elif action == "upgrade":
            flink_job.upgrade(settings, secrets, say)
        elif action == "watch":
            flink_job.watch(settings, secrets, say)
    except OSError as error:
        raise PrerequisiteError(f"Flink is not reachable ({error}): run `make up` first.") from error
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ripple_stack", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("up", help="install what is missing, start everything, wait until ready")
    verbs.add_parser("down", help="stop everything, keep data")
    verbs.add_parser("clean", help="stop everything and wipe data, logs and secrets")
    status = verbs.add_parser("status", help="one row per component")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    for verb in ("start", "stop"):
        command = verbs.add_parser(verb, help=f"{verb} one component (e.g. flink, postgres, kafka)")
        command.add_argument("component")
    flink = verbs.add_parser("flink", help="the aggregation job on the local Flink cluster")
    flink.add_argument(
        "action",
        choices=["status", "submit", "savepoint", "upgrade", "watch"],
        help="status: job, state, last checkpoint, lag; submit: start it if it is not running "
        "(resuming from the newest checkpoint); savepoint: stop it with a savepoint; "
        "upgrade: stop with a savepoint and resubmit from it; watch: keep resubmitting it after "
        "a JobManager restart (run by the stack itself)",
    )
    flink.add_argument("--json", action="store_true", help="machine-readable status")
    arguments = parser.parse_args(argv)

    try:
        stack = Stack(load_settings(), say)
        if arguments.verb == "up":
            stack.up()
            print_table(stack.status())
        elif arguments.verb == "down":
            stack.down()
        elif arguments.verb == "clean":
            stack.clean()
        elif arguments.verb == "status":
            rows = stack.status()
            if arguments.json:
                print(json.dumps(status_rows_as_dicts(rows), indent=2))
            else:
                print_table(rows)
            return 0 if all(row.ready for row in rows) else 3
        elif arguments.verb == "start":
            stack.start(arguments.component)
        elif arguments.verb == "stop":
            stack.stop(arguments.component)
        elif arguments.verb == "flink":
            return flink_verb(stack, arguments.action, arguments.json)
    except (PrerequisiteError, ConfigError) as error:
        print(f"ripple: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
