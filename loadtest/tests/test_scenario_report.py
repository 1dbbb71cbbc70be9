"""The pure parts of the failure scenarios: timeline, phase tables, verdicts."""

from __future__ import annotations

from decimal import Decimal

from loadtest.scenarios.report import render_markdown
from loadtest.scenarios.shop import Shop
from loadtest.scenarios.stats import (
    FAIL,
    INCONCLUSIVE,
    INFO,
    PASS,
    SKIP,
    Check,
    Outcome,
    Phase,
    SalesTotals,
    Sample,
    check_fast_unavailable,
    check_flink,
    check_kept_accepting,
    check_overload,
    check_recovered,
    check_stored_once,
    markdown_table,
    phase_table,
    reasons_table,
    sales_of,
    summarize,
    timeline,
    verdict,
)


def outcome(start: float, status: int, latency_ms: float = 10.0, events: int = 1) -> Outcome:
    return Outcome(start=start, latency_s=latency_ms / 1000, status=status, events=events)


# --- timeline and phases ------------------------------------------------------------------------


def test_timeline_buckets_requests_by_second_and_status() -> None:
    outcomes = [
        outcome(100.1, 202, 10, events=4),
        outcome(100.5, 202, 30),
        outcome(100.9, 429, 1),
        outcome(101.2, 503, 5000),
        outcome(101.3, 0, 20000),
        outcome(250.0, 202),  # outside the run: ignored
    ]
    samples = [
        Sample(100.2, {"lag_event_store": 5.0, "stored_rows": None}),
        Sample(100.8, {"lag_event_store": 7.0}),
        Sample(101.5, {"stored_rows": 3.0}),
    ]
    rows = timeline(outcomes, samples, t0=100.0, t_end=102.0)
    assert len(rows) == 2
    first, second = rows
    assert (first.requests, first.accepted, first.accepted_events, first.rejected_429) == (3, 2, 5, 1)
    assert first.p50_ms == 10.0
    assert first.probes == {"lag_event_store": 7.0}  # the last reading of the second wins
    assert (second.unavailable_503, second.error) == (1, 1)
    assert second.probes == {"stored_rows": 3.0}
    assert second.as_row(["stored_rows", "lag_flink"])[-2:] == [3.0, None]


def test_summarize_counts_only_its_phase() -> None:
    outcomes = [outcome(0.5, 202, 10), outcome(1.5, 202, 20), outcome(2.5, 429, 1), outcome(5.0, 202)]
    samples = [
        Sample(1.0, {"lag_event_store": 3.0, "lag_flink": 40.0}),
        Sample(2.0, {"lag_event_store": 9.0}),
    ]
    summary = summarize(Phase("during", 1.0, 3.0), outcomes, samples)
    assert summary.requests == 2
    assert summary.req_per_s == 1.0
    assert (summary.accepted, summary.rejected_429) == (1, 1)
    assert summary.accepted_p99_ms == 20.0
    assert summary.rejected_p99_ms == 1.0
    assert (summary.max_lag_store, summary.max_lag_flink) == (9.0, 40.0)


def test_phase_table_is_markdown_with_one_row_per_phase() -> None:
    summaries = [
        summarize(Phase("before", 0, 1), [outcome(0.2, 202)], []),
        summarize(Phase("failure", 1, 2), [], []),
    ]
    table = phase_table(summaries).splitlines()
    assert table[0].startswith("| phase | s | requests | req/s | 202 |")
    assert table[1].startswith("|---|")
    assert table[2].startswith("| before | 1 | 1 | 1 | 1 |")
    assert "| failure | 1 | 0 | 0 | 0 |" in table[3]
    assert table[3].count("| - ") >= 4  # no latency and no lag: a dash, not "None"


def test_markdown_table_escapes_pipes() -> None:
    assert "a\\|b" in markdown_table(["x"], [["a|b"]])


# --- verdicts -----------------------------------------------------------------------------------


def test_every_accepted_event_stored_passes() -> None:
    checks = check_stored_once(
        accepted={"a", "b"}, sent={"a", "b", "c"}, stored={"a", "b", "c"}, stored_rows=3
    )
    assert [c.result for c in checks] == [PASS, PASS, PASS]
    assert "stored without a 202 (503/no answer, then written) 1" in checks[0].detail


def test_a_lost_accepted_event_fails_and_points_at_dead_letters() -> None:
    checks = check_stored_once(
        accepted={"a", "b"}, sent={"a", "b"}, stored={"a"}, stored_rows=1, dead_lettered=1
    )
    assert checks[0].result == FAIL
    assert "missing 1" in checks[0].detail
    assert "dead_letters" in checks[0].detail


def test_unknown_ids_and_duplicate_rows_fail() -> None:
    checks = check_stored_once(accepted={"a"}, sent={"a"}, stored={"a", "zzz"}, stored_rows=3)
    assert [c.result for c in checks] == [PASS, FAIL, FAIL]


def test_nothing_accepted_is_not_a_pass() -> None:
    checks = check_stored_once(accepted=set(), sent={"a"}, stored=set(), stored_rows=0)
    assert checks[0].result == SKIP


def test_flink_check_compares_exactly() -> None:
    expected = SalesTotals(10, 7, Decimal("123.40"))
    assert check_flink(expected, SalesTotals(10, 7, Decimal("123.40")), "RUNNING", 3).result == PASS
    twice = check_flink(expected, SalesTotals(12, 8, Decimal("140.00")), "RUNNING", 3)
    assert twice.result == FAIL
    assert "agg_product_sales has 12, 8, 140.00" in twice.detail


def test_flink_check_skips_without_a_job_or_database() -> None:
    assert check_flink(None, None, None, 0).detail == "skipped: flink job not running"
    assert check_flink(None, None, "RUNNING", 0).result == SKIP


def test_kept_accepting_and_recovered_use_shares() -> None:
    good = summarize(Phase("p", 0, 10), [outcome(i / 2, 202) for i in range(19)] + [outcome(9.5, 503)], [])
    bad = summarize(Phase("p", 0, 10), [outcome(i, 503) for i in range(5)] + [outcome(9.5, 202)], [])
    assert check_kept_accepting(good, "x").result == PASS
    assert check_kept_accepting(bad, "x").result == FAIL
    assert check_recovered(good, "x").result == PASS
    assert check_recovered(bad, "x").result == FAIL
    assert check_recovered(None, "x").result == SKIP


def test_fast_unavailable_needs_503s_under_the_limit_and_no_hangs() -> None:
    during = summarize(Phase("failure", 0, 10), [outcome(1, 503, 5000), outcome(2, 503, 5100)], [])
    results = check_fast_unavailable(during, [5.0, 5.1], limit_s=6.0)
    assert [c.result for c in results] == [PASS, PASS, PASS]
    slow = check_fast_unavailable(during, [5.0, 9.0], limit_s=6.0)
    assert slow[1].result == FAIL
    hung = summarize(Phase("failure", 0, 10), [outcome(1, 0, 20000)], [])
    results = check_fast_unavailable(hung, [], limit_s=6.0)
    assert [c.result for c in results] == [FAIL, FAIL]


def test_overload_checks() -> None:
    calm = summarize(Phase("before", 0, 10), [outcome(i, 202, 20) for i in range(10)], [])
    flood = [outcome(10 + i / 10, 429, 2) for i in range(90)] + [outcome(10 + i, 202, 30) for i in range(10)]
    overload = summarize(Phase("overload", 10, 20), flood, [])
    results = check_overload(calm, overload, [0.002] * 90, missing_retry_after=0)
    assert [c.result for c in results] == [PASS, PASS, PASS, PASS, PASS]
    slow_rejects = check_overload(calm, overload, [0.3] * 90, missing_retry_after=3)
    assert [c.result for c in slow_rejects][:3] == [PASS, FAIL, FAIL]
    not_limited = summarize(Phase("overload", 10, 20), [outcome(11, 202)], [])
    assert check_overload(calm, not_limited, [], 0)[0].result == FAIL


def test_verdict_fails_on_any_fail_and_ignores_skips_and_infos() -> None:
    assert verdict([Check("a", PASS, ""), Check("b", SKIP, ""), Check("c", INFO, "")]) == PASS
    assert verdict([Check("a", PASS, ""), Check("b", FAIL, "")]) == FAIL


def test_report_markdown_has_verdict_table_and_checks() -> None:
    summaries = [summarize(Phase("before", 0, 1), [outcome(0.5, 202)], [])]
    text = render_markdown("Scenario x", "intro", summaries, [Check("stored", FAIL, "missing 1")], ["a note"])
    assert "**Verdict: FAIL**" in text
    assert "| before |" in text
    assert "- **FAIL** stored: missing 1" in text
    assert "- a note" in text
    assert "![timeline](timeline.png)" in text
    # A reader of the lag plot is told that committed offsets lag by up to a commit interval.
    assert "committed offsets, which the dispatcher advances once a second" in text


# --- the shop's events --------------------------------------------------------------------------


def test_shop_events_are_unique_tagged_and_consistent() -> None:
    shop = Shop("lt-run", seed=1)
    order = shop.order()
    payment = shop.payment(order)
    batch = shop.checkout()
    ids = [order.id, payment.id, *(e.id for e in batch)]
    assert len(set(ids)) == len(ids)
    assert {e.source for e in [order, payment, *batch]} == {"/loadtest/lt-run"}
    assert all(item["sku"].startswith("lt-run-") for item in order.data["items"])
    cents = sum(round(i["unitPrice"] * 100) * i["quantity"] for i in order.data["items"])
    assert round(order.data["amount"] * 100) == cents
    assert payment.data["orderId"] == order.data["orderId"]
    assert payment.data["amount"] == order.data["amount"]
    headers = order.binary_headers()
    assert headers["ce-id"] == order.id and headers["Content-Type"] == "application/json"


def test_no_answer_is_counted_apart_from_other_errors() -> None:
    during = summarize(Phase("failure", 0, 10), [outcome(1, 502), outcome(2, 0), outcome(3, 503, 5000)], [])
    assert (during.error, during.no_answer) == (2, 1)
    hung = check_fast_unavailable(during, [5.0], limit_s=6.0)[-1]
    assert hung.result == FAIL
    assert hung.detail.startswith("1 requests got no HTTP answer") and "1 other errors" in hung.detail


def test_reasons_table_sorts_by_count() -> None:
    table = reasons_table({(429, "rate-limited"): 3, (503, "kafka-unavailable"): 9}).splitlines()
    assert table[2] == "| 503 | kafka-unavailable | 9 |"
    assert table[3] == "| 429 | rate-limited | 3 |"


def test_flink_check_fails_when_a_running_job_did_not_come_back() -> None:
    gone = check_flink(None, None, None, 300, was_running=True)
    assert gone.result == FAIL
    assert "not running 300 s after" in gone.detail


def test_sales_of_sums_like_the_flink_job() -> None:
    orders = [
        {
            "items": [
                {"sku": "a", "quantity": 2, "unitPrice": 19.9},
                {"sku": "b", "quantity": 1, "unitPrice": 0.1},
            ]
        },
        {"items": [{"sku": "a", "quantity": 1, "unitPrice": 0.2}]},
    ]
    assert sales_of(orders) == SalesTotals(4, 3, Decimal("40.10"))


def test_flink_check_uses_client_bounds_while_the_store_is_incomplete() -> None:
    lower, upper = SalesTotals(10, 5, Decimal("100.00")), SalesTotals(14, 7, Decimal("150.00"))
    bounds = (lower, upper)
    inside = check_flink(None, SalesTotals(12, 6, Decimal("120.00")), "RUNNING", 5, True, False, bounds)
    assert inside.result == PASS and "bounds" in inside.detail
    twice = check_flink(None, SalesTotals(20, 10, Decimal("200.00")), "RUNNING", 5, True, False, bounds)
    assert twice.result == FAIL


def test_rate_limited_requests_do_not_count_against_the_failure() -> None:
    during = summarize(Phase("p", 0, 10), [outcome(1, 202), outcome(2, 429), outcome(3, 429)], [])
    assert check_kept_accepting(during, "x").result == PASS
    assert check_recovered(during, "x").detail.startswith("1/1 requests not rate-limited")


def test_a_store_behind_a_backlog_is_inconclusive_not_failed() -> None:
    waiting = [
        Check("every 202 event stored", FAIL, "missing 3"),
        Check("backlog drained after the load stopped", FAIL, "not within 60 s"),
        Check("Flink aggregates exactly once", PASS, ""),
    ]
    assert verdict(waiting, backlog_left=True) == INCONCLUSIVE
    assert verdict(waiting, backlog_left=False) == FAIL
    lost_and_counted_twice = [*waiting, Check("Flink aggregates exactly once", FAIL, "more")]
    assert verdict(lost_and_counted_twice, backlog_left=True) == FAIL
