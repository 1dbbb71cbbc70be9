"""What the pictures of loadtest's reports share: matplotlib without a display, a phase shaded
and named across stacked axes, the figure written and freed, and a probe reading as a number.

Used by the scenario timeline, the autoscale demo and the Locust report; each draws its own axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.scenarios.stats import Phase


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only: the benches run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shade_phase(axes: Sequence[Any], phase: Phase, t0: float, colour: str, alpha: float) -> None:
    """The phase as a band on every axis, its name at the top of the first."""
    for axis in axes:
        axis.axvspan(phase.start - t0, phase.end - t0, color=colour, alpha=alpha)
    axes[0].annotate(
        phase.name, (phase.start - t0, 1), xycoords=("data", "axes fraction"), va="top", fontsize=8
    )


def save(figure: Any, path: Path, dpi: int) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)


def number(value: object) -> float | None:
    """A probe's reading as a number; None (a gap in the line) for anything else."""
    return float(value) if isinstance(value, int | float) else None
