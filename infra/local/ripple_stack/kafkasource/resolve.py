"""Where a KafkaSource's sink and Kafka are on this machine.

A sink ref to a Knative Service (serving.knative.dev/v1, kind Service) resolves to the local URL
of the function started from knative/<name>/service.yaml; in-cluster addresses in URIs and
bootstrap servers are rewritten by settings.cluster_address_map(), as for the functions' env.
"""

from __future__ import annotations

from urllib.parse import urljoin

from ..settings import Settings
from .manifest import Destination, KafkaSource, ManifestError


def rewrite(value: str, settings: Settings) -> str:
    for cluster_address, local_address in settings.cluster_address_map().items():
        value = value.replace(cluster_address, local_address)
    return value


def service_urls(settings: Settings) -> dict[str, str]:
    from ..components.functions import knative_functions

    return {function.name: function.url(settings) for function in knative_functions()}


def destination_url(
    destination: Destination, source: KafkaSource, where: str, settings: Settings, services: dict[str, str]
) -> str:
    if destination.ref_name is None:
        return rewrite(destination.uri or "", settings)
    if destination.ref_kind != "Service" or not (destination.ref_api_version or "").startswith(
        "serving.knative.dev/"
    ):
        raise ManifestError(
            f"{source.path}: {where}.ref: only Knative Services (serving.knative.dev/v1 Service) run "
            f"locally, not {destination.ref_api_version} {destination.ref_kind}"
        )
    url = services.get(destination.ref_name)
    if url is None:
        raise ManifestError(
            f"{source.path}: {where}.ref.name: there is no knative/{destination.ref_name}/service.yaml "
            f"(known: {', '.join(sorted(services)) or 'none'})"
        )
    return urljoin(url + "/", destination.uri.lstrip("/")) if destination.uri else url


def bootstrap_servers(source: KafkaSource, settings: Settings) -> tuple[str, ...]:
    return tuple(rewrite(server, settings) for server in source.bootstrap_servers)
