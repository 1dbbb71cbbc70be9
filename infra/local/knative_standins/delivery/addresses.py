"""Where destinations are: the addresses a cluster's API server would tell the stand-ins.

In a cluster, Knative resolves a Destination's ref through the Addressable's `status.address`, and
in-cluster DNS names reach Services. Locally the stack runner knows both and passes them in the
environment of every stand-in it starts:

  RIPPLE_KNATIVE_SERVICES   each Knative Service's local address, name=url, comma-separated
                            (event-store=http://127.0.0.1:18401,...)
  RIPPLE_CLUSTER_ADDRESSES  in-cluster host:port -> local host:port, for URIs and bootstrap
                            servers (ripple-kafka-kafka-bootstrap.ripple.svc:9092=127.0.0.1:19092)

A ref to anything but a Knative Service (serving.knative.dev/v1 Service), or to a Service the
runner did not name, is a ConfigError saying which manifest field and which Services exist.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

from .. import ConfigError
from .spec import Destination

SERVICES_ENV = "RIPPLE_KNATIVE_SERVICES"
CLUSTER_ADDRESSES_ENV = "RIPPLE_CLUSTER_ADDRESSES"


def _pairs(variable: str, raw: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name or not value:
            raise ConfigError(f"{variable}: {item!r} is not NAME=VALUE; the stack runner sets it (make up)")
        pairs[name] = value
    return pairs


@dataclass(frozen=True)
class Addresses:
    services: Mapping[str, str] = field(default_factory=dict)
    cluster_addresses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Addresses:
        return cls(
            _pairs(SERVICES_ENV, env.get(SERVICES_ENV, "")),
            _pairs(CLUSTER_ADDRESSES_ENV, env.get(CLUSTER_ADDRESSES_ENV, "")),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that gives these addresses to a stand-in's process."""
        return {
            SERVICES_ENV: ",".join(f"{name}={url}" for name, url in sorted(self.services.items())),
            CLUSTER_ADDRESSES_ENV: ",".join(f"{a}={b}" for a, b in sorted(self.cluster_addresses.items())),
        }

    def rewrite(self, value: str) -> str:
        """An in-cluster address (in a URI or a bootstrap server) as it is reached here."""
        for cluster_address, local_address in self.cluster_addresses.items():
            value = value.replace(cluster_address, local_address)
        return value

    def url(self, destination: Destination, where: str) -> str:
        """The URL a Destination resolves to; `where` names the manifest field for errors."""
        if destination.ref_name is None:
            return self.rewrite(destination.uri or "")
        if destination.ref_kind != "Service" or not (destination.ref_api_version or "").startswith(
            "serving.knative.dev/"
        ):
            raise ConfigError(
                f"{where}.ref: only Knative Services (serving.knative.dev/v1 Service) run locally, "
                f"not {destination.ref_api_version} {destination.ref_kind}"
            )
        url = self.services.get(destination.ref_name)
        if url is None:
            known = ", ".join(sorted(self.services)) or "none"
            raise ConfigError(
                f"{where}.ref.name: there is no knative/{destination.ref_name}/service.yaml (known: {known})"
            )
        return urljoin(url + "/", destination.uri.lstrip("/")) if destination.uri else url
