"""The gateway's CPU per request without sockets, Kafka or Keycloak: for profiling changes fast.

Drives binary-mode order events (or, with `--batch N`, batches of N structured order events
built as loadtest/gateway/events.lua builds them for `make bench-peers`) through the gateway's
`Gateway.handle` (`--app handler`) or the ASGI app ripple_server serves (`--app asgi`: POST /
straight to the gateway, as uvicorn would call it), `--concurrency` requests at a time on uvloop,
with a stand-in producer that acknowledges every record on its report thread (as librdkafka's
delivery reports arrive) and a token signed by a key generated here. Prints the CPU time per
request of the process (and per event, with `--batch`). Nothing leaves the process, so it needs
no stack; it keeps a core busy, so on the shared machine a run longer than a few seconds takes
the stack lock like any benchmark. Wall times on a shared machine mean little: compare CPU per
request of builds run in turn (PYTHONPATH=<checkout>/functions, --gateway-dir).

    .venv/bin/python -m loadtest.gateway.inprocess [--app asgi] [--requests 20000] [--gc-tune]
    .venv/bin/python -m loadtest.gateway.inprocess --app asgi --batch 100 --requests 2000 --gc-tune
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

from loadtest.measure import asgi_post_scope

BODY = (
    b'{"orderId":"o-1","customerId":"c-1","items":[{"sku":"sku-1","quantity":1,"unitPrice":12.5}],'
    b'"amount":12.5,"currency":"EUR"}'
)


BATCH_TYPE = b"application/cloudevents-batch+json"


# The RUN_ID loadtest/gateway/run.py gives events.lua ("wrk" and time.time_ns()): its 19-digit run
# is in every id, and such runs are what the gateway's JSON reading looks for (LONG_NUMBER).
RUN_ID = "wrk1764777600123456789"


def batch_body(request: int, size: int, thread: int = 1, run_id: str = RUN_ID) -> bytes:
    """The body events.lua sends with BATCH=size: a JSON array of structured order.placed events
    with ids "<run>-<thread>-<n>" and customers c-<n mod 1000> (n counts this thread's events)."""
    events = []
    for i in range(size):
        counter = request * size + i + 1
        event_id = f"{run_id}-{thread}-{counter}"
        data = (
            f'{{"orderId":"o-{event_id}","customerId":"c-{counter % 1000}","items":[{{"sku":"sku-1",'
            f'"quantity":1,"unitPrice":12.5}}],"amount":12.5,"currency":"EUR"}}'
        )
        events.append(
            f'{{"specversion":"1.0","id":"{event_id}","source":"/loadtest/wrk",'
            f'"type":"dev.ripple.shop.order.placed","data":{data}}}'
        )
    return ("[" + ",".join(events) + "]").encode()


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


def scope(index: int, token: str, body: bytes | None = None) -> dict:
    """The ASGI scope of request `index`: a binary-mode event, or a batch when `body` is given."""
    if body is None:
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
    else:
        headers = [
            (b"host", b"gateway"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", BATCH_TYPE),
            (b"content-length", str(len(body)).encode()),
        ]
    return asgi_post_scope(headers)


async def receive() -> dict:
    return {"type": "http.request", "body": BODY, "more_body": False}


def receiver(body: bytes) -> Any:
    """An ASGI receive() that hands over `body` in one message."""

    async def receive_body() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_body


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
    parser.add_argument("--batch", type=int, default=1, help="events per request; above 1 a batch")
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

    # Batch bodies are built before the clock starts (wrk builds them, not the gateway); a few
    # hundred distinct ones, reused, keep the memory small.
    bodies = [batch_body(i, args.batch) for i in range(256)] if args.batch > 1 else []

    def request_of(index: int) -> tuple[dict, Any]:
        if not bodies:
            return scope(index, token), receive
        body = bodies[index % len(bodies)]
        return scope(index, token, body), receiver(body)

    async def handler(index: int) -> None:
        response = await gateway.handle(Request(*request_of(index)))
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

            await asgi(*request_of(index), send)
            assert sent[0]["status"] == 202, sent
    else:
        call = handler
    import uvloop

    cpu = uvloop.run(drive(call, args.requests, args.concurrency))
    per_event = f", {cpu * 1e6 / args.batch:.1f} µs per event" if args.batch > 1 else ""
    print(
        f"{args.app}: {args.requests} requests of {args.batch} event(s), "
        f"{cpu * 1e6:.0f} µs CPU per request{per_event}"
    )


if __name__ == "__main__":
    main()
