"""Each function's cold start without the activator: exec -> /readyz 200, and its import profile.

`ready`: starts one instance of each function the way the stack's activator starts it (the first
container of `knative/<name>/service.yaml`: its command, its env with the addresses rewritten, in
`functions/<name>/`) on a free port, polls the readiness path every 5 ms from the moment of exec
until it answers 200, then stops it. --rounds times per function, one process at a time, builds
alternating (`--build NAME=<checkout>`, repeatable, runs that checkout's functions the same way,
its `functions/` ahead of this venv's editable install; this checkout only when no --build is
given, or with --with-this), and prints the median and range per function
and build with the load average before and after. What the figure is: the activator's "exec ->
ready" (ripple_serving_cold_start_seconds) without its 20 ms probe interval. Needs the stack up
(the consumers migrate against PostgreSQL, the gateway's readiness asks Kafka and Keycloak,
query's PostgreSQL and Keycloak); it sends no event, so no topic or table is written.

`imports`: `python -X importtime` of each function's server process as it starts (the function's
module, the probe routes, uvicorn's loop and protocol), stopped just before it would bind, written
to `<out>/<build>-<name>.importtime.txt`, and a summary: the total and the biggest top-level
imports. Needs nothing running. The consumers' migration runs in a forked child meanwhile
(ripple_consumer.serve); it is left out here, its own imports are profiled as `migration`.

    .venv/bin/python -m loadtest.serving.exec_ready ready [--rounds 5] [--functions gateway,query]
        [--build before=/tmp/main-before --build after=/tmp/main-after] [--with-this]
    .venv/bin/python -m loadtest.serving.exec_ready imports --out loadtest/serving/cold-start/profiles
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.measure import free_port
from ripple_stack.settings import REPO_ROOT, Settings, load_settings

FUNCTIONS = ("gateway", "event-store", "order-alerts", "notifier", "dead-letters", "query")
POLL_S = 0.005
READY_TIMEOUT_S = 60.0

# Runs in the function's folder instead of its command: the same start, stopped where uvicorn
# would bind (after its event loop and protocol modules are imported), without the migration.
IMPORTS_DRIVER = """
import sys
import uvicorn

def _loaded(self, sockets=None):
    self.config.get_loop_factory()
    self.config.load()
    raise SystemExit(0)

uvicorn.Server.run = _loaded
module, argv = sys.argv[1], sys.argv[2:]
if module == "ripple_consumer.serve":
    import ripple_consumer.serve as serve
    serve.start_migration = lambda folder: 0
    serve.finish_migration = lambda child: None
    serve.main(argv)
else:
    import ripple_server
    ripple_server.main(argv)
"""
MIGRATION_DRIVER = "from ripple_consumer.serve import migrate"  # what the forked child imports first
MIGRATION_IMPORTS = "import alembic.command, alembic.config, ripple_consumer.migrations"


def launch(name: str, source: Path, settings: Settings, secrets: dict[str, str], port: int):
    """(command, cwd, env) of one instance of `name` from `source`'s manifest, on `port`."""
    from ripple_stack.components.functions import KnativeFunction

    function = KnativeFunction(source / "knative" / name / "service.yaml", 0)
    container = function.container()
    command = [*container.get("command", []), *container.get("args", [])]
    if command[0] == "python":
        command[0] = sys.executable
    env = {
        **function.environment(settings, secrets),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        # That build's shared ripple_* packages, ahead of this venv's editable install.
        "PYTHONPATH": str(source / "functions"),
    }
    probe = container.get("readinessProbe", {}).get("httpGet", {}).get("path", "/")
    return command, source / "functions" / name, env, probe


def _status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def exec_to_ready(name: str, source: Path, settings: Settings, secrets: dict[str, str]) -> float:
    """Seconds from exec to the first 200 on the readiness path; the instance is stopped after."""
    port = free_port()
    command, cwd, env, probe = launch(name, source, settings, secrets, port)
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        while _status(port, probe) != 200:
            if process.poll() is not None or time.monotonic() - started > READY_TIMEOUT_S:
                error = process.stderr.read().decode(errors="replace")[-2000:] if process.poll() else ""
                raise RuntimeError(f"{name} ({source}) did not become ready: {error or 'timeout'}")
            time.sleep(POLL_S)
        return time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stderr:
            process.stderr.close()


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ready(builds: dict[str, Path], functions: Sequence[str], rounds: int) -> int:
    from ripple_stack.secrets import load_secrets

    settings = load_settings()
    secrets = load_secrets(settings)
    print(f"exec -> /readyz 200, {rounds} rounds, one process at a time; load average {load_average()}")
    results: dict[tuple[str, str], list[float]] = {}
    for name in functions:
        for source in builds.values():  # the page cache warm, bytecode written
            exec_to_ready(name, source, settings, secrets)
        for _ in range(rounds):
            for build, source in builds.items():
                results.setdefault((name, build), []).append(exec_to_ready(name, source, settings, secrets))
        for build in builds:
            values = results[(name, build)]
            print(
                f"{name:13} {build:7} median {statistics.median(values) * 1000:6.0f} ms"
                f"  range {min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"
                f"  ({', '.join(f'{v * 1000:.0f}' for v in values)})"
            )
    print(f"load average after: {load_average()}")
    return 0


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def summarize(profile: str, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """Total import ms of a -X importtime profile, and its biggest top-level imports (cumulative ms)."""
    total = 0.0
    roots: list[tuple[str, float]] = []
    for match in IMPORT_LINE.finditer(profile):
        self_us, cumulative_us, indent, module = match.groups()
        total += int(self_us) / 1000
        if len(indent) == 1:
            roots.append((module, int(cumulative_us) / 1000))
    return total, sorted(roots, key=lambda item: -item[1])[:top]


def imports(builds: dict[str, Path], functions: Sequence[str], out: Path) -> int:
    from ripple_stack.secrets import load_secrets

    settings = load_settings()
    secrets = load_secrets(settings)
    out.mkdir(parents=True, exist_ok=True)
    print(f"python -X importtime of each function's start; load average {load_average()}")
    for name in functions:
        for build, source in builds.items():
            command, cwd, env, _ = launch(name, source, settings, secrets, free_port())
            module = command[command.index("-m") + 1]
            argv = command[command.index("-m") + 2 :]
            driver = [sys.executable, "-X", "importtime", "-c", IMPORTS_DRIVER, module, *argv]
            started, cpu_before = time.monotonic(), _children_cpu_s()
            done = subprocess.run(driver, cwd=cwd, env=env, capture_output=True, text=True)
            elapsed, cpu = time.monotonic() - started, _children_cpu_s() - cpu_before
            (out / f"{build}-{name}.importtime.txt").write_text(done.stderr)
            total, roots = summarize(done.stderr)
            print(
                f"{name:13} {build:7} exit {done.returncode}: {elapsed * 1000:.0f} ms to bind "
                f"({cpu * 1000:.0f} ms CPU), imports {total:.0f} ms (importtime's own overhead included)"
            )
            for module_name, ms in roots:
                print(f"    {ms:6.0f} ms  {module_name}")
    if any(name != "gateway" and name != "query" for name in functions):
        for build, source in builds.items():
            cwd = source / "functions" / "event-store"
            env = {**os.environ, "PYTHONPATH": str(source / "functions")}
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", MIGRATION_IMPORTS],
                cwd=cwd, env=env, capture_output=True, text=True,
            )  # fmt: skip
            (out / f"{build}-migration.importtime.txt").write_text(done.stderr)
            total, roots = summarize(done.stderr)
            print(f"{'migration':13} {build:7} (the consumers' forked child) imports {total:.0f} ms")
            for module_name, ms in roots[:4]:
                print(f"    {ms:6.0f} ms  {module_name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("ready", "imports"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument(
        "--build", action="append", default=[], metavar="NAME=CHECKOUT", help="another checkout to compare"
    )
    parser.add_argument("--with-this", action="store_true", help="this checkout too, beside the --build ones")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest/serving/cold-start/profiles")
    args = parser.parse_args(argv)
    builds: dict[str, Path] = {}
    for item in args.build:
        build, _, checkout = item.partition("=")
        builds[build] = Path(checkout).resolve()
    if not builds or args.with_this:
        builds = {"this": REPO_ROOT, **builds}
    functions = [name for name in args.functions.split(",") if name]
    if args.mode == "ready":
        return ready(builds, functions, args.rounds)
    return imports(builds, functions, args.out)


if __name__ == "__main__":
    sys.exit(main())
