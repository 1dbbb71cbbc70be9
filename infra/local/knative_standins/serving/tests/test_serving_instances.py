"""instances.Instance: a real child process started on its port, judged ready by its readiness
path, stopped the way a pod is (TERM when idle, KILL after the grace period)."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from knative_standins.serving.instances import DRAINING, STARTING, Instance
from loadtest.measure import free_port

SERVER = """
import http.server, os, signal, sys
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ok).serve_forever()
"""


async def started(tmp_path, kind: str) -> Instance:
    instance = Instance("tiny", 0, "127.0.0.1", free_port())
    await instance.start([sys.executable, "-c", SERVER, kind], str(tmp_path), {}, tmp_path / "tiny.log")
    async with aiohttp.ClientSession() as session:
        assert await instance.wait_ready(session, "/healthz")
    return instance


def test_ready_when_the_readiness_path_answers_then_stopped_by_term(tmp_path):
    async def scenario():
        instance = await started(tmp_path, "polite")
        assert instance.name == "tiny-1" and instance.state == STARTING  # the scaler marks it READY
        assert 0 < instance.ready_after_s < 10
        await instance.stop(grace_s=10)
        assert instance.state == DRAINING and instance.process.returncode == -15  # SIGTERM

    asyncio.run(scenario())


def test_a_process_that_ignores_term_is_killed_after_the_grace_period(tmp_path):
    async def scenario():
        instance = await started(tmp_path, "stubborn")
        began = time.monotonic()
        await instance.stop(grace_s=0.5)
        assert instance.process.returncode == -9 and time.monotonic() - began >= 0.5

    asyncio.run(scenario())


def test_a_process_that_exits_is_never_ready(tmp_path):
    async def scenario():
        instance = Instance("tiny", 0, "127.0.0.1", free_port())
        command = [sys.executable, "-c", "raise SystemExit(3)"]
        await instance.start(command, str(tmp_path), {}, tmp_path / "x.log")
        async with aiohttp.ClientSession() as session:
            assert not await instance.wait_ready(session, "/healthz")
        assert await instance.process.wait() == 3

    asyncio.run(scenario())
