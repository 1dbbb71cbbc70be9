"""What the loadtest commands share around their argument parsers: the console log, and a run's
options dataclass filled from the parsed arguments (`dest` names the dataclass field).

Used by `python -m loadtest.scenarios` and `python -m loadtest.autoscale`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, TypeVar

T = TypeVar("T")


def setup_logging(verbose: bool = False) -> None:
    """Time-stamped lines on the console; the Kafka client's and urllib3's own chatter silenced."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("kafka", "urllib3", "pika"):  # pika: the RabbitMQ readiness probe of a restart
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def add_seconds(parser: Any, flag: str, field: str, default: float | None, help_text: str) -> None:
    """A duration option: --flag SECONDS, filling the options' `field`."""
    parser.add_argument(flag, dest=field, metavar="SECONDS", type=float, default=default, help=help_text)


def options_from(kind: type[T], arguments: argparse.Namespace) -> T:
    """The dataclass with every field an argument of the same name gave (None: the field's default)."""
    given: dict[str, Any] = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(kind)  # type: ignore[arg-type]
        if getattr(arguments, field.name, None) is not None
    }
    return kind(**given)
