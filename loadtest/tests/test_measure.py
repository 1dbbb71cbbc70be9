"""loadtest.measure.percentile: the one percentile definition of every report in loadtest/."""

from __future__ import annotations

import pytest

from loadtest.measure import percentile


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 99) is None


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_ignores_input_order_and_single_values() -> None:
    assert percentile([9.0, 1.0, 5.0], 50) == 5.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_a_bad_rank() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)
