"""Where a Trigger's subscriber and dead-letter sink are on this machine.

A ref to a Knative Service (serving.knative.dev/v1 Service) is the local address of the
function started from knative/<name>/service.yaml (whatever fronts it there); a plain URI is
used as is, with in-cluster addresses rewritten as for the functions' env.
"""

from __future__ import annotations

from urllib.parse import urljoin

from ..kafkasource.manifest import Destination
from ..settings import Settings
from .manifest import ManifestError


def destination_url(destination: Destination, where: str, settings: Settings) -> str:
    from ..components.functions import knative_functions

    if destination.ref_name is None:
        value = destination.uri or ""
        for cluster_address, local_address in settings.cluster_address_map().items():
            value = value.replace(cluster_address, local_address)
        return value
    if destination.ref_kind != "Service" or not (destination.ref_api_version or "").startswith(
        "serving.knative.dev/"
    ):
        raise ManifestError(f"{where}.ref: only Knative Services run locally, not {destination.ref_kind}")
    services = {function.name: function.url(settings) for function in knative_functions()}
    url = services.get(destination.ref_name)
    if url is None:
        known = ", ".join(sorted(services)) or "none"
        raise ManifestError(
            f"{where}.ref.name: there is no knative/{destination.ref_name}/service.yaml (known: {known})"
        )
    return urljoin(url + "/", destination.uri.lstrip("/")) if destination.uri else url
