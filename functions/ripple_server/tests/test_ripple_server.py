"""ripple_server: options from arguments and environment (a table), and one process serving every
kind of function (ripple_server.aio's without Flask, functions_framework.aio's, a Flask one)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ripple_server

FUNCTIONS = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "env", "cpus", "expected"),
    [
        (
            ["--target=handle", "--source=main.py", "--signature-type=cloudevent"],
            {"PORT": "9000"},
            2,
            {"target": "handle", "signature_type": "cloudevent", "port": 9000, "threads": 8},
        ),
        (
            ["--target", "handle"],
            {},
            None,
            {"source": "main.py", "host": "0.0.0.0", "port": 8080, "threads": 4, "log_level": "error"},
        ),
        (
            [],
            {"FUNCTION_TARGET": "f", "THREADS": "6", "SERVER_LOG_LEVEL": "INFO", "KEEP_ALIVE_S": "5"},
            8,
            {"target": "f", "threads": 6, "log_level": "info", "keep_alive_s": 5},
        ),
        (["--target=h", "--port=1234"], {"PORT": "9"}, 1, {"port": 1234}),
    ],
)
def test_options_come_from_arguments_then_environment_then_defaults(argv, env, cpus, expected):
    options = ripple_server.parse(argv, env, cpus)
    assert {key: getattr(options, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        ([], {}, "--target NAME or set FUNCTION_TARGET"),
        (["--target=h"], {"THREADS": "many"}, "THREADS='many' is not an integer"),
        (["--target=h"], {"THREADS": "0"}, "THREADS=0 is too small"),
        (["--target=h"], {"SERVER_LOG_LEVEL": "loud"}, "SERVER_LOG_LEVEL='loud' is not one of"),
        (["--target=h", "--port=x"], {}, "PORT='x' is not an integer"),
    ],
)
def test_unusable_settings_stop_with_what_to_set(argv, env, says):
    with pytest.raises(SystemExit, match=says.replace("(", r"\(").replace(")", r"\)")):
        ripple_server.parse(argv, env, 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


ASYNC_FUNCTION = """
import functions_framework.aio
from starlette.responses import Response

@functions_framework.aio.http
async def handle(request):
    return Response(b"async", status_code=202)
"""

RIPPLE_ASYNC_FUNCTION = """
import sys
from ripple_server import aio
from starlette.responses import Response

@aio.http
async def handle(request):
    return Response(f"ripple flask={'flask' in sys.modules}".encode(), status_code=202)
"""

FLASK_FUNCTION = """
import threading
import functions_framework

@functions_framework.http
def handle(request):
    return threading.current_thread().name
"""


@pytest.mark.parametrize(
    ("source", "answer"),
    [(ASYNC_FUNCTION, "async"), (RIPPLE_ASYNC_FUNCTION, "ripple flask=False"), (FLASK_FUNCTION, "WSGI")],
)
def test_one_process_serves_the_function(tmp_path, source, answer):
    (tmp_path / "main.py").write_text(source)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "THREADS": "2", "PYTHONPATH": str(FUNCTIONS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ripple_server", "--target=handle"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the function did not answer within 60 s"
                time.sleep(0.2)
        assert body.startswith(answer)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert children == []  # no worker processes: the instance is this one process
    finally:
        process.terminate()
        # uvicorn stops gracefully, then re-raises the signal it caught (exit by SIGTERM)
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
