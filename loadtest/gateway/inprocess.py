"""The gateway's CPU per request without sockets, Kafka or Keycloak: for profiling changes fast.

Drives binary-mode order events through the gateway's `Gateway.handle` (`--app handler`) or the
functions-framework ASGI app around it (`--app asgi`: Starlette, the framework's middleware, as
uvicorn would call it), `--concurrency` requests at a time on uvloop, with a stand-in producer
that acknowledges every record on its report thread (as librdkafka's delivery reports arrive)
and a token signed by a key generated here. Prints the CPU time per request of the process.
Nothing leaves the process, so it needs no stack and no lock; wall times on a shared machine
mean little, compare CPU per request of builds run in turn (PYTHONPATH=<checkout>/functions).

    .venv/bin/python -m loadtest.gateway.inprocess [--app asgi] [--requests 20000] [--gc-tune]
    .venv/bin/py-spy record -r 500 -o handler.svg -- .venv/bin/python -m loadtest.gateway.inprocess

Issue 22's profile notes: loadtest/gateway/profiles/issue22/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

BODY = (
    b'{"orderId":"o-1","customerId":"c-1","items":[{"sku":"sku-1","quantity":1,"unitPrice":12.5}],'
    b'"amount":12.5,"currency":"EUR"}'
)


class StandInProducer:
    """Queues like produce(); its poll() (the report thread) acknowledges what was queued."""

    def __init__(self, _options: dict) -> None:
        self.pending: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: list, on_delivery: Any) -> None:
        self.pending.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        time.sleep(0.0005)  # a broker round trip, roughly; the GIL is free meanwhile
        pending, self.pending = self.pending, []
        for report in pending:
            report(None, None)
        return len(pending)


def build(gateway_dir: Path) -> tuple[Any, str]:
    """A Gateway with the stand-in producer and a local key, and a token it accepts."""
    sys.path.insert(0, str(gateway_dir))
    os.environ.setdefault("KEYCLOAK_URL", "http://127.0.0.1:1")  # never fetched: the keys are local
    from ripple_auth import Authenticator
    from ripple_auth.samples import publisher_claims, signed_token, signing_key
    from ripple_events import load_catalog
    from ripple_gateway import app
    from ripple_gateway.config import load_config
    from ripple_gateway.publisher import Publisher

    key = signing_key()
    config = load_config()
    claims = publisher_claims(
        config.tokens.issuer,
        config.tokens.audience,
        lifetime_s=3600,
        resource_access={"ripple-gateway": {"roles": ["orders.publish"]}},
    )
    token = signed_token(claims, key)
    gateway = app.Gateway.__new__(app.Gateway)
    gateway.config = config
    gateway.catalog = load_catalog()
    keys = {"keys": [key.export_public(as_dict=True)]}
    gateway.auth = Authenticator(config.tokens, fetch_jwks=lambda: keys)
    gateway.publisher = Publisher(config, factory=StandInProducer)
    app._setup_logging()
    app.access_log.handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115 - lives with the process
    app.gateway = lambda: gateway  # what main.py asks for
    return gateway, token


def scope(index: int, token: str) -> dict:
    headers = [
        (b"host", b"gateway"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"ce-specversion", b"1.0"),
        (b"ce-id", f"inprocess-{index}".encode()),
        (b"ce-source", b"/loadtest/inprocess"),
        (b"ce-type", b"dev.ripple.shop.order.placed"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }


async def receive() -> dict:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def drive(call: Any, requests: int, concurrency: int) -> float:
    await call(0)  # first request: caches, lazy imports
    started = time.process_time()
    for first in range(1, requests + 1, concurrency):
        await asyncio.gather(*(call(first + i) for i in range(concurrency)))
    return (time.process_time() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=["handler", "asgi"], default="handler")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gc-tune", action="store_true", help="apply the gateway's GC tuning, as it does")
    parser.add_argument(
        "--gateway-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "functions" / "gateway",
        help="functions/gateway of the build to measure (its ripple_* packages: PYTHONPATH)",
    )
    args = parser.parse_args()
    gateway, token = build(args.gateway_dir)
    if args.gc_tune:
        from ripple_gateway import app

        app._tune_gc(gateway.config.gc_gen0_threshold)
    from starlette.requests import Request

    async def handler(index: int) -> None:
        response = await gateway.handle(Request(scope(index, token), receive))
        assert response.status_code == 202, response.body

    if args.app == "asgi":
        import ripple_server

        os.chdir(args.gateway_dir)
        if hasattr(ripple_server, "load_app"):  # the app ripple_server serves (ripple_server.aio)
            asgi = ripple_server.load_app("main.py", "handle", "http")
        else:  # a build from before ripple_server.aio: functions-framework's app
            import functions_framework.aio

            asgi = functions_framework.aio.create_asgi_app(target="handle", source="main.py")

        async def call(index: int) -> None:
            sent: list[dict] = []

            async def send(message: dict) -> None:
                sent.append(message)

            await asgi(scope(index, token), receive, send)
            assert sent[0]["status"] == 202, sent
    else:
        call = handler
    import uvloop

    cpu = uvloop.run(drive(call, args.requests, args.concurrency))
    print(f"{args.app}: {args.requests} requests, {cpu * 1e6:.0f} µs CPU per request")


if __name__ == "__main__":
    main()
