"""Bearer-token checks and RFC 9457 problem responses shared by ripple's HTTP functions.

The gateway and the query function accept the same Keycloak tokens the same way; this package is
that one way. It knows nothing of events or tables.
"""

from .problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, Problem
from .tokens import (
    Authenticator,
    Principal,
    TokenSettings,
    forbidden,
    require_roles,
)

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "Authenticator",
    "Principal",
    "Problem",
    "TokenSettings",
    "forbidden",
    "require_roles",
]
