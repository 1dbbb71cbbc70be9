"""The activator of one function: its address, holding requests until an instance can take them.

`python -m knative_standins.serving.activator --spec FILE` serves the function's address (the port
nginx, the KafkaSource dispatchers and `make status` use) and plays the roles of Knative's
activator and queue-proxy: each request takes a slot on a ready instance (at most
containerConcurrency each, queueing above it), is held while the function is at zero or starting,
and is forwarded once there is a slot. A request that cannot be served within the revision's
timeoutSeconds gets 503 application/problem+json with Retry-After, never a dropped connection.
The same process runs the function's autoscaler (scaler.py) and serves /metrics (its own),
/function-metrics (the instances', merged) and /status on its admin port. Supervised by
supervisord; the instances are its children.

One request's way through: `serve` accounts for it (the concurrency the autoscaler sees), `forward`
is the policy (hold until a slot, 499 when the client left meanwhile, 503 at the deadline, another
slot when the instance was gone before it read the request, 504 and 502 otherwise), and `exchange`
is the transport: proxy.py's asyncio protocols and httptools toward the client, the delivery
package's pooled HTTP/1.1 client (delivery/http1.py) toward the instances (~80 µs CPU per request;
the first, aiohttp-based data path cost ~230 µs: loadtest/serving/profiles/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from .. import ConfigError
from ..delivery import loop as event_loop
from ..delivery.http1 import Http1Client, HttpClientError, NotAnswered
from ..env import whole_number
from ..pod_cpu import PodCgroups
from . import proxy
from .instances import READY, STARTING
from .manifest import FunctionSpec
from .metrics import ServingMetrics, merge_expositions
from .scaler import Scaler, log
from .throttler import Throttler

RETRY_AFTER_S = 1
# nginx and the functions enforce their own, smaller limits; this only bounds the buffer.
MAX_BODY_BYTES = 64 * 1024**2
# gunicorn closes an idle keep-alive connection after 2 s: reuse ours for less than that.
UPSTREAM_KEEPALIVE_S = 1.5
# The throttler already bounds the requests per instance (containerConcurrency); this only caps the
# connections to one instance when that is unbounded (0).
UPSTREAM_MAX_CONNECTIONS = 1024
CLIENT_KEEPALIVE_S = 75.0


def problem(status: int, title: str, detail: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status, body=json.dumps(body), content_type="application/problem+json", headers=headers
    )


class Activator:
    def __init__(self, spec: FunctionSpec, pod_start_s: float = 0.0, pods: PodCgroups | None = None) -> None:
        self.spec = spec
        self.upstream: Http1Client | None = None  # set by run(): it needs the running loop
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self.metrics = ServingMetrics(spec.namespace, spec.name, Path(spec.cold_start_log))
        self.metrics.metric = spec.revision.metric
        self.metrics.target = spec.revision.target_value
        self.metrics.max_scale = spec.revision.effective_max_scale
        self.throttler = Throttler(spec.revision.container_concurrency)
        self.scaler = Scaler(spec, self.metrics, self.throttler, pod_start_s, pods)
        self.timeout_s = spec.revision.timeout_s

    # --- the data path ---
    async def serve(self, request: proxy.Request, client: proxy.ClientConnection) -> proxy.Response:
        loop = self.loop  # asyncio.get_running_loop() calls getpid()
        arrived = loop.time()
        scaler, load, metrics = self.scaler, self.scaler.load, self.metrics
        load.enter(arrived)
        metrics.request_concurrency = load.concurrency
        try:
            response = await self.forward(request, client, arrived, arrived + self.timeout_s)
        except Exception as error:  # never a dropped connection, whatever went wrong
            log(f"activator: {request.method!r} {request.path!r} failed: {error!r}")
            response = proxy.problem(502, "Bad Gateway", f"the activator failed the request: {error}.")
        finally:
            load.leave(loop.time())
            metrics.request_concurrency = load.concurrency
        metrics.request_done(response[0], loop.time() - arrived)
        if scaler.throttler.waiters:
            metrics.queued = scaler.throttler.queued
        return response

    async def forward(
        self, request: proxy.Request, client: proxy.ClientConnection, arrived: float, deadline: float
    ) -> proxy.Response:
        """Hold the request until an instance has a slot, then exchange it; a problem otherwise."""
        scaler, throttler = self.scaler, self.throttler
        for _attempt in range(3):
            if not throttler.ready and not scaler.count(STARTING):
                scaler.poke(arrived)
            instance = await throttler.acquire(deadline)
            if instance is not None and client.closed:
                # The client gave up while the request was held (a dispatcher's attempt timeout):
                # forwarding it now would only run it behind the retry's back.
                throttler.release(instance)
                return proxy.problem(
                    499, "Client Closed Request", "the client left while the request was held."
                )
            if instance is None:
                why = scaler.last_failure or "no instance had a free slot"
                return proxy.problem(
                    503,
                    "Service Unavailable",
                    f"{self.spec.name} could not take the request within {self.timeout_s:g} s ({why}).",
                    RETRY_AFTER_S,
                )
            try:
                return await self.exchange(request, instance.port, deadline)  # type: ignore[attr-defined]
            except TimeoutError:  # before OSError, of which it is one
                return proxy.problem(
                    504, "Gateway Timeout", f"{self.spec.name} did not answer within {self.timeout_s:g} s."
                )
            except (NotAnswered, OSError):
                # Never reached a live server (refused: it just exited; or it closed the connection
                # without a byte of an answer): not processed, so another slot may take it.
                continue
            except HttpClientError as error:  # the answer broke off, or was not valid HTTP
                return proxy.problem(502, "Bad Gateway", f"{self.spec.name} failed the request: {error}.")
            finally:
                throttler.release(instance)
        return proxy.problem(
            503, "Service Unavailable", f"{self.spec.name} closed the connection three times.", RETRY_AFTER_S
        )

    async def exchange(self, request: proxy.Request, port: int, deadline: float) -> proxy.Response:
        """The transport: the request to one instance over a pooled connection, its response back."""
        upstream = self.upstream
        assert upstream is not None
        method = request.method
        status, headers, body = await upstream.exchange(
            method, self.spec.host, port, request.path, proxy.forwarded_head(request), request.body, deadline
        )
        skip = proxy.RESPONSE_SKIP_HEAD if method == b"HEAD" else proxy.RESPONSE_SKIP
        return status, [h for h in headers if h[0].lower() not in skip], body

    def _sweep(self, server: proxy.ProxyServer) -> None:
        """Close idle client connections, and idle upstream ones to instances no longer ready (those
        idle past UPSTREAM_KEEPALIVE_S the client closes itself, and never reuses)."""
        assert self.upstream is not None
        host = self.spec.host
        self.upstream.close_idle({(host, i.port) for i in self.throttler.ready})  # type: ignore[attr-defined]
        server.sweep()
        asyncio.get_running_loop().call_later(proxy.SWEEP_INTERVAL_S, self._sweep, server)

    # --- admin port ---
    async def admin(self, request: web.BaseRequest) -> web.Response:
        if request.path == "/metrics":
            self.scaler.publish()
            return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")
        if request.path == "/function-metrics":
            return web.Response(
                text=await self._instance_metrics(), content_type="text/plain", charset="utf-8"
            )
        if request.path == "/status":
            return web.json_response(self.scaler.status())
        if request.path == "/healthz":
            return web.Response(text="ok")
        return problem(404, "Not Found", "the activator's admin port serves /metrics, /status and /healthz")

    async def _instance_metrics(self) -> str:
        """The ready instances' own /metrics, merged (scraping them never wakes the function)."""
        assert self.scaler.session is not None
        ready = [i for i in self.scaler.instances.values() if i.state == READY]

        async def page(instance) -> tuple[str, str]:
            try:
                async with self.scaler.session.get(  # type: ignore[union-attr]
                    instance.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    return instance.name, (await response.text()) if response.status == 200 else ""
            except (aiohttp.ClientError, TimeoutError):
                return instance.name, ""

        return merge_expositions(list(await asyncio.gather(*(page(i) for i in ready))))

    async def run(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        spec = self.spec
        # Readiness probes: no pooled connection may keep an instance's server busy at shutdown.
        self.scaler.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self.upstream = Http1Client(self.timeout_s, UPSTREAM_MAX_CONNECTIONS, UPSTREAM_KEEPALIVE_S)
        public = proxy.ProxyServer(loop, self.serve, MAX_BODY_BYTES, CLIENT_KEEPALIVE_S)
        self._sweep(public)
        factory = public.protocol
        admin = web.Server(self.admin, access_log=None)
        servers = [
            await loop.create_server(factory, spec.host, spec.port, reuse_address=True, backlog=1024),
            await loop.create_server(admin, spec.host, spec.admin_port, reuse_address=True),
        ]
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        scaler_task = loop.create_task(self.scaler.run())
        # initial-scale: the revision starts with its instances, as a new Knative revision does.
        self.scaler.tick(time.monotonic())
        address = f"{spec.host}:{spec.port} (admin {spec.admin_port})"
        log(f"activator for {spec.name} on {address}, {spec.revision}")
        await stop.wait()
        log("stopping: in-flight requests first, then the instances")
        # Stop taking connections, let what is in flight finish, then stop the instances.
        servers[0].close()
        # Wait for the requests in flight only, then close every (idle keep-alive) connection.
        deadline = loop.time() + self.timeout_s
        while self.scaler.load.concurrency and loop.time() < deadline:
            await asyncio.sleep(0.05)
        public.close_idle()
        await self.scaler.shutdown()
        scaler_task.cancel()
        servers[1].close()
        self.upstream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="knative_standins.serving.activator", description=__doc__)
    parser.add_argument("--spec", required=True, type=Path, help="the FunctionSpec JSON written by make up")
    arguments = parser.parse_args(argv)
    try:
        spec = FunctionSpec.from_json(arguments.spec.read_text())
    except (OSError, ValueError, TypeError) as error:
        print(f"activator: cannot read {arguments.spec} ({error}): run `make up`.", file=sys.stderr)
        return 2
    try:
        # Off by default; a fidelity run sets it to the real cluster's pod created -> exec time.
        pod_start_s = whole_number("RIPPLE_SERVING_POD_START_MS", 0, 0) / 1000
    except ConfigError as error:
        print(f"activator: {error}", file=sys.stderr)
        return 2
    pods = PodCgroups()
    if pods.unavailable:
        log(f"instances get no CPU weight from the manifest's request: {pods.unavailable}")
    else:
        pods.remove_stale(f"{spec.name}-")  # instances of an activator that was killed
    activator = Activator(spec, pod_start_s, None if pods.unavailable else pods)
    event_loop.run(activator.run())  # uvloop: the activator is on every request's path
    return 0


if __name__ == "__main__":
    sys.exit(main())
