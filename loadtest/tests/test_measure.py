"""loadtest.measure: the one percentile definition of every report in loadtest/, and count_until."""

from __future__ import annotations

import asyncio

import pytest

from loadtest import measure
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


class _Running:
    returncode = None

    def poll(self) -> int | None:
        return None


def test_count_until_marks_ten_and_ninety_percent(monkeypatch, tmp_path):
    monkeypatch.setattr(measure.time, "sleep", lambda seconds: None)
    counts = iter([0, 5, 10, 50, 90, 100])
    progress = measure.count_until(lambda: next(counts), 100, _Running(), tmp_path / "log")
    assert set(progress.marks) == {0.1, 0.9}
    assert progress.marks[0.1][0] <= progress.marks[0.9][0] and progress.elapsed >= 0
    assert progress.steady(100) > 0


def test_count_until_stops_when_the_process_exits(tmp_path):
    class Exited:
        returncode = 3

        def poll(self) -> int:
            return 3

    with pytest.raises(SystemExit, match=r"exited \(3\)"):
        measure.count_until(lambda: 0, 10, Exited(), tmp_path / "log")


def test_asgi_post_hands_the_app_a_post_with_the_binary_event_headers() -> None:
    seen: list[tuple[dict, bytes]] = []

    async def app(scope: dict, receive, send) -> None:
        message = await receive()
        seen.append((scope, message["body"]))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    body = b'{"orderId":"o-1"}'
    attributes = {"specversion": "1.0", "id": "e-1", "datacontenttype": "application/json"}
    headers = measure.binary_event_headers("event-store", attributes, body)
    status = asyncio.run(measure.asgi_post(app, headers, body))

    assert status == 202
    scope, received = seen[0]
    assert (scope["method"], scope["path"], received) == ("POST", "/", body)
    assert scope["headers"] == [
        (b"host", b"event-store"),
        (b"content-length", b"17"),
        (b"ce-specversion", b"1.0"),
        (b"ce-id", b"e-1"),
        (b"content-type", b"application/json"),
    ]


def test_timed_call_counts_the_calls_cpu_and_writes_its_profile(tmp_path) -> None:
    import pstats

    from loadtest.measure import bench_event_attributes, timed_call

    profile = tmp_path / "run.prof"
    cpu, wall = timed_call(lambda: sum(range(200_000)), profile)
    assert cpu > 0 and wall > 0
    assert any("sum" in name for _, _, name in pstats.Stats(str(profile)).stats)
    assert timed_call(lambda: None)[0] >= 0  # without a path nothing is written

    first, second = (bench_event_attributes("t", "/s", partitionkey="k") for _ in range(2))
    assert first["id"] != second["id"]
    assert {**first, "id": ""} == {**second, "id": ""}
    assert first["partitionkey"] == "k" and first["tenant"] == "acme"
