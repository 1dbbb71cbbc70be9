"""Serve a functions-framework function in one process with uvicorn: the command of every function.

functions-framework's CLI serves a function with gunicorn: a master process that only supervises,
plus `WORKERS` worker processes. Knative scales pods, not workers inside a pod, and the master
costs a whole interpreter per instance (issue 22: gateway 157 MiB as master + 2 workers, event-store
114 MiB as master + 1, against 65 MiB for uvicorn alone serving the same app). functions-framework
3.10.2 has no single-process mode for production (`--debug` is one, but turns on Flask's debugger
and uvicorn's debug log), so `python -m ripple_server --target=handle --source=main.py` builds the
function's app and serves it with uvicorn in this process:

- an asynchronous function decorated with `ripple_server.aio` (gateway, event-store, order-alerts):
  the Starlette app functions_framework.aio would build (same routes, same CloudEvent handling,
  same errors; ripple_server/aio.py), without importing functions-framework, whose package
  imports Flask: ~120-190 ms of CPU of every cold start (issue 22). Served directly, with uvloop
  and httptools when installed, as gunicorn's uvicorn worker did;
- a source that imports functions_framework (read before it runs: functions-framework must set
  up its Flask app before the module runs) gets functions-framework's own `create_app`: a Flask
  function (query) is served through a2wsgi's WSGI adapter, its requests
  on `THREADS` threads (functions-framework's variable and default: 4 per CPU), as gunicorn's
  gthread worker ran them (the event loop only moves bytes; the handler runs on those threads); a
  `functions_framework.aio` function, directly.

uvicorn runs without WebSocket support (no function has one; "auto" imported wsproto at each
start). Cold starts, measured (exec -> /readyz 200) and profiled (`python -X importtime`):
loadtest/serving/cold-start/README.md.

More capacity is more instances, added by Knative's autoscaler (containerConcurrency and the
target in knative/<name>/service.yaml), never more processes in one.

Settings, read like functions-framework's CLI reads them (argument, else variable, else default):

| argument / variable | default | what |
|---|---|---|
| `--target` / FUNCTION_TARGET | (required) | the function's name in the source |
| `--source` / FUNCTION_SOURCE | main.py | the file that defines it |
| `--signature-type` / FUNCTION_SIGNATURE_TYPE | http | http, event, cloudevent or typed |
| `--host` / HOST | 0.0.0.0 | address to listen on |
| `--port` / PORT | 8080 | port to listen on (Knative sets PORT) |
| THREADS | 4 x CPUs | threads running a Flask function's requests (an async function ignores it) |
| SERVER_LOG_LEVEL | error | uvicorn's log level (functions-framework gave gunicorn `error`) |
| KEEP_ALIVE_S | 2 | idle keep-alive connections closed after (gunicorn's; the activator reuses 1.5 s) |

The listening socket has SO_REUSEPORT: several instances started on one port share its
connections, balanced by the kernel (how loadtest/isolation.py runs two instances side by side
without a proxy in front); one instance alone is unaffected.
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SIGNATURE_TYPES = ("http", "event", "cloudevent", "typed")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ServerConfigError(SystemExit):
    """A setting is unusable: the process stops with this sentence (what to set), no traceback."""


@dataclass(frozen=True)
class Options:
    target: str
    source: str
    signature_type: str
    host: str
    port: int
    threads: int
    log_level: str
    keep_alive_s: int


def _int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ServerConfigError(
            f"ripple_server: {name}={raw!r} is not an integer: set a whole number."
        ) from None
    if value < minimum:
        raise ServerConfigError(f"ripple_server: {name}={value} is too small: set {minimum} or more.")
    return value


def parse(argv: Sequence[str], env: Mapping[str, str], cpus: int | None) -> Options:
    """The options from the command line and the environment (pure: no process state read)."""
    parser = argparse.ArgumentParser(
        prog="python -m ripple_server", description="Serve a functions-framework function in one process."
    )
    parser.add_argument("--target", default=env.get("FUNCTION_TARGET"))
    parser.add_argument("--source", default=env.get("FUNCTION_SOURCE", "main.py"))
    parser.add_argument(
        "--signature-type", default=env.get("FUNCTION_SIGNATURE_TYPE", "http"), choices=SIGNATURE_TYPES
    )
    parser.add_argument("--host", default=env.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", default=env.get("PORT", "8080"))
    args = parser.parse_args(list(argv))
    if not args.target:
        raise ServerConfigError(
            "ripple_server: no function named: pass --target NAME or set FUNCTION_TARGET."
        )
    log_level = env.get("SERVER_LOG_LEVEL", "error").lower()
    if log_level not in LOG_LEVELS:
        raise ServerConfigError(
            f"ripple_server: SERVER_LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}."
        )
    return Options(
        target=args.target,
        source=args.source,
        signature_type=args.signature_type,
        host=args.host,
        port=_int("PORT", str(args.port), 0),
        threads=_int("THREADS", env.get("THREADS") or str((cpus or 1) * 4), 1),
        log_level=log_level,
        keep_alive_s=_int("KEEP_ALIVE_S", env.get("KEEP_ALIVE_S") or "2", 1),
    )


def uses_functions_framework(source: str) -> bool:
    """Whether the source imports functions_framework (read, not run: the choice of app comes first)."""
    with open(source, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "functions_framework" or name.startswith("functions_framework.") for name in names):
            return True
    return False


def load_app(source: str, target: str, signature_type: str) -> Any:
    """The function's app: ripple_server.aio's (Starlette, no Flask imported) for a function
    decorated with it; functions-framework's own for a source that imports functions_framework
    (Flask, or Starlette for functions_framework.aio)."""
    if not os.path.exists(source):
        raise ServerConfigError(
            f"ripple_server: {source} does not exist: pass --source FILE (the function's file)."
        )
    if uses_functions_framework(source):
        import functions_framework

        return functions_framework.create_app(target, source, signature_type)
    from ripple_server import aio

    return aio.load_app(source, target)


def build_app(options: Options) -> Any:
    return load_app(options.source, options.target, options.signature_type)


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and shareable (SO_REUSEPORT); bound only once the app is built, so a connection the
    kernel accepts is one the function can answer."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(app: Any, options: Options) -> None:
    """Serve `app` with uvicorn in this process until SIGTERM/SIGINT (in-flight requests finish)."""
    import uvicorn

    wsgi = not _is_asgi(app)
    if wsgi:
        from a2wsgi import WSGIMiddleware

        app = WSGIMiddleware(app, workers=options.threads)
    config = uvicorn.Config(
        app,
        interface="asgi3",
        loop="auto",
        http="auto",
        lifespan="off" if wsgi else "auto",
        # No function serves WebSockets: "auto" imported wsproto at every start (~25-120 ms).
        ws="none",
        log_level=options.log_level,
        access_log=False,
        timeout_keep_alive=options.keep_alive_s,
    )
    uvicorn.Server(config).run(sockets=[listening_socket(options.host, options.port)])


def _is_asgi(app: Any) -> bool:
    flask = sys.modules.get("flask")  # not imported: no Flask app can exist
    return flask is None or not isinstance(app, flask.Flask)


def main(argv: Sequence[str] | None = None, prepare: Callable[[Any], None] | None = None) -> None:
    """Parse, build the app, let `prepare(app)` add to it (routes, hooks), serve."""
    options = parse(sys.argv[1:] if argv is None else argv, os.environ, os.cpu_count())
    # Start-up allocates a lot and frees little: collections during it are wasted time (the
    # gateway's build: ~390 -> ~300 ms measured). What exists once the app is built lives as long as
    # the process, so it is frozen (never scanned again) before serving.
    gc.disable()
    try:
        app = build_app(options)
        if prepare is not None:
            prepare(app)
    finally:
        gc.freeze()
        gc.enable()
    serve(app, options)
