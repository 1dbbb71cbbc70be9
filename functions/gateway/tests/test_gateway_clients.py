"""The official CloudEvents SDKs publish through the edge (nginx) and the records keep every attribute.

Each client is a small program under clients/ that builds events with its SDK and lets the SDK
encode the request, exactly as a user would: binary and structured mode, and batch mode where
the SDK can write a batch (only sdk-go can). The test sends a few events with each (the edge
allows one token 20 requests/s), reads the records back from Kafka and compares every attribute.

    Python  cloudevents 1.12.0 (the project's pin)  in the project's virtualenv
    Python  cloudevents 2.2.0, its v1 API           in $RIPPLE_HOME/clients/python-sdk2 (pip)
    Go      github.com/cloudevents/sdk-go/v2        built with the machine's Go (module proxy)
    node    cloudevents (npm)                       npm ci in $RIPPLE_HOME/clients/js

The Python 1.x binary request has no Content-Type (the SDK's default for dict data), and the
2.x SDK percent-encodes header values: both are part of what is checked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_testkit import ORDER_TYPE, TopicReader, new_id, order

from ripple_stack.settings import load_settings

pytestmark = pytest.mark.integration

CLIENTS = Path(__file__).resolve().parent / "clients"
# Attributes every client sends; the subject has a space, which the HTTP binding percent-encodes.
SUBJECT = "order 42"
CHANNEL = "web"
PRIORITY = 3
SETUP_TIMEOUT_S = 600
RETRIED = (429, 503)
TRIES = 10
RETRY_PAUSE_S = 5


def _need(program: str, what: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: {what} (the gateway's client tests need it)")
    return path


def _run(command: list[str], cwd: Path, tries: int = 1) -> None:
    for _ in range(tries):
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
        )
        if done.returncode == 0:
            return
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _digest(source: Path) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def _installed(stamp: Path, source: Path) -> bool:
    """Whether what `source` pins was installed (the stamp holds its digest, written after)."""
    return stamp.exists() and stamp.read_text() == _digest(source)


@pytest.fixture(scope="module")
def client_home() -> Path:
    home = load_settings().home / "clients"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _python_sdk1(home: Path) -> list[str]:
    return [sys.executable, str(CLIENTS / "python" / "send_sdk1.py")]


def _python_sdk2(home: Path) -> list[str]:
    requirements = CLIENTS / "python" / "requirements-sdk2.txt"
    venv = home / "python-sdk2"
    stamp = venv / "installed.stamp"
    python = venv / "bin" / "python"
    if not python.exists() or not _installed(stamp, requirements):
        _run([sys.executable, "-m", "venv", "--clear", str(venv)], cwd=home)
        _run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], cwd=home)
        stamp.write_text(_digest(requirements))
    return [str(python), str(CLIENTS / "python" / "send_sdk2.py")]


def _go_sdk(home: Path) -> list[str]:
    go = _need("go", "install Go 1.24 or newer (Debian: apt-get install golang-go)")
    binary = home / "go" / "send"
    binary.parent.mkdir(exist_ok=True)
    # go.sum pins every module; -mod=readonly refuses to change go.mod/go.sum on the fly.
    _run([go, "build", "-mod=readonly", "-buildvcs=false", "-o", str(binary), "."], cwd=CLIENTS / "go")
    return [str(binary)]


def _js_sdk(home: Path) -> list[str]:
    node = _need("node", "install Node.js 20 or newer with npm (Debian: apt-get install nodejs npm)")
    npm = _need("npm", "install npm (Debian: apt-get install npm)")
    work = home / "js"
    work.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json", "send.mjs"):
        shutil.copyfile(CLIENTS / "js" / name, work / name)
    stamp = work / "installed.stamp"
    lock = work / "package-lock.json"
    if not (work / "node_modules").exists() or not _installed(stamp, lock):
        # Twice: npm ci on the loaded machine was seen failing once on extraction, then passing.
        _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=work, tries=2)
        stamp.write_text(_digest(lock))
    return [node, str(work / "send.mjs")]


# name -> (setup returning the command, modes its SDK can write)
CLIENT_SETUPS = {
    "python-cloudevents-1.12.0": (_python_sdk1, ("binary", "structured")),
    "python-cloudevents-2.2.0": (_python_sdk2, ("binary", "structured")),
    "go-sdk-go-v2.16.2": (_go_sdk, ("binary", "structured", "batch")),
    "js-cloudevents-10.0.0": (_js_sdk, ("binary", "structured")),
}


def _event(client: str, when: str) -> dict:
    return {
        "id": new_id(client),
        "source": f"/tests/clients/{client}",
        "type": ORDER_TYPE,
        "subject": SUBJECT,
        "time": when,
        "channel": CHANNEL,
        "priority": PRIORITY,
        "data": order(),
    }


def _send(client: str, command: list[str], plan: dict) -> list[dict]:
    sent = subprocess.run(
        command, input=json.dumps(plan), capture_output=True, text=True, timeout=120, check=False
    )
    assert sent.returncode == 0, f"{client} failed:\n{sent.stdout}\n{sent.stderr}"
    outcomes = [json.loads(line) for line in sent.stdout.splitlines() if line.strip()]
    assert [o["mode"] for o in outcomes] == [r["mode"] for r in plan["requests"]], sent.stdout
    return outcomes


def _as_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize("client", CLIENT_SETUPS.keys())
def test_sdk_client_events_arrive_with_their_attributes(stack, client_home, client):
    setup, modes = CLIENT_SETUPS[client]
    command = setup(client_home)
    # Fresh after the setup (which may take minutes on a new machine): ripple-publisher, tenant acme.
    publisher_token = stack.client_token()
    # A past time with milliseconds: every SDK can carry it exactly (JavaScript keeps milliseconds).
    moment = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123000)
    when = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    requests_ = [
        {"mode": mode, "events": [_event(client, when) for _ in range(2 if mode == "batch" else 1)]}
        for mode in modes
    ]
    plan = {"url": stack.nginx_url.rstrip("/") + "/", "token": publisher_token, "requests": requests_}
    orders = TopicReader(stack.kafka_bootstrap, "ripple.shop.orders")
    try:
        pending = requests_
        for _ in range(TRIES):
            outcomes = _send(client, command, plan | {"requests": pending})
            # What a client must retry, as it would: 429 (the edge limits ripple-publisher as a
            # whole and other tests may use it right now) and 503 (another test stopped Kafka;
            # nothing of the request was acknowledged). Anything else must be a 202.
            for outcome in outcomes:
                assert outcome["status"] in (202, *RETRIED), f"{client} {outcome['mode']}: {outcome}"
            pending = [r for r, o in zip(pending, outcomes, strict=True) if o["status"] in RETRIED]
            if not pending:
                break
            time.sleep(RETRY_PAUSE_S)
        assert not pending, f"{client}: still answered 429/503 after {TRIES} tries"
        events = {event["id"]: event for request in requests_ for event in request["events"]}
        records = orders.records_with_ids(events)
    finally:
        orders.close()

    for event_id, event in events.items():
        record = records[event_id]
        headers = {name: value.decode() for name, value in record.headers}
        key = f"acme/{event['data']['orderId']}"
        assert _as_utc(headers.pop("ce_time")) == moment, f"{client}: time changed"
        assert headers == {
            "content-type": "application/json",
            "ce_specversion": "1.0",
            "ce_id": event_id,
            "ce_source": event["source"],
            "ce_type": ORDER_TYPE,
            "ce_subject": SUBJECT,
            "ce_channel": CHANNEL,
            "ce_priority": str(PRIORITY),
            "ce_tenant": "acme",
            "ce_partitionkey": key,
        }, client
        assert record.key == key.encode()
        assert json.loads(record.value) == event["data"]
