"""delivery.addresses: a Destination resolved from what the stack runner passes (environment)."""

from __future__ import annotations

import pytest

from knative_standins import ConfigError
from knative_standins.delivery.addresses import Addresses
from knative_standins.delivery.spec import Destination

SERVICE = {"ref_api_version": "serving.knative.dev/v1", "ref_kind": "Service"}
ADDRESSES = Addresses({"event-store": "http://127.0.0.1:18401"}, {"kafka.ripple.svc:9092": "127.0.0.1:19092"})

CASES = {
    "a Service ref": (Destination(**SERVICE, ref_name="event-store"), "http://127.0.0.1:18401"),
    "a ref with a uri path": (
        Destination(**SERVICE, ref_name="event-store", uri="/replay"),
        "http://127.0.0.1:18401/replay",
    ),
    "a uri to a cluster address": (
        Destination(uri="http://kafka.ripple.svc:9092/x"),
        "http://127.0.0.1:19092/x",
    ),
    "a uri elsewhere": (Destination(uri="http://example.test/x"), "http://example.test/x"),
}


@pytest.mark.parametrize(("destination", "url"), CASES.values(), ids=CASES.keys())
def test_destinations_resolve_to_local_urls(destination, url):
    assert ADDRESSES.url(destination, "k.yaml: spec.sink") == url


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (Destination(**SERVICE, ref_name="nope"), "spec.sink.ref.name: there is no knative/nope/"),
        (
            Destination(ref_api_version="eventing.knative.dev/v1", ref_kind="Broker", ref_name="b"),
            "spec.sink.ref: only Knative Services",
        ),
    ],
)
def test_what_cannot_run_locally_names_the_field(destination, message):
    with pytest.raises(ConfigError, match=message):
        ADDRESSES.url(destination, "k.yaml: spec.sink")


def test_the_environment_round_trip_is_what_the_runner_hands_over():
    assert Addresses.from_env(ADDRESSES.to_env()) == ADDRESSES
    assert Addresses.from_env({}) == Addresses()
    with pytest.raises(ConfigError, match="RIPPLE_KNATIVE_SERVICES: 'oops' is not NAME=VALUE"):
        Addresses.from_env({"RIPPLE_KNATIVE_SERVICES": "oops"})
