"""The CloudEvents HTTP protocol binding's attribute encoding, which the pinned SDK lacks.

functions-framework 3.10 pins cloudevents <= 1.12, whose HTTP conversion copies attribute values
into `ce-*` headers and back as they are; the binding (v1.0.2, 3.1.3.2) asks senders to
percent-encode them and receivers to decode them. Every HTTP hop ripple owns (the gateway, the
functions, the KafkaSource and Broker stand-ins, order-alerts and the dead-letter replay) encodes
and decodes through this one module, so a value crosses every hop byte for byte
(http_binding). binary_mode reads a binary-mode request into a CloudEvent as the SDK does, at a
fraction of its cost (the consumers' hot path).
"""

from .binary_mode import *  # noqa: F403 (the names of binary_mode.__all__)
from .binary_mode import __all__ as _binary_mode_names
from .http_binding import *  # noqa: F403 (the names of http_binding.__all__)
from .http_binding import __all__ as _http_binding_names

__all__ = [*_http_binding_names, *_binary_mode_names]
