"""The bursts scenario's pure parts: the timetable, the shop's flagged orders, the path's verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadtest.scenarios.burstplan import (
    DEFAULT_FAULTS,
    HOPS,
    KILL_INSTANCE,
    QUICK,
    STOP,
    BurstOptions,
    FaultAt,
    MailRate,
    PathReading,
    check_back_to_zero,
    check_delay,
    check_path,
    delay_table,
    delays,
    hop_rows,
    mail_rates,
    parse_mail_head,
    plan,
    recovery_rows,
    recovery_table,
)
from loadtest.scenarios.shop import BIG_TICKET, CATALOG, ORDER, PAYMENT, Shop
from loadtest.scenarios.stats import FAIL, INFO, PASS

# --- the timetable --------------------------------------------------------------------------------


def test_the_default_run_is_issue_19s() -> None:
    options = BurstOptions().validate()
    assert (options.bursts, options.events, options.rate) == (3, 45_000, 300.0)
    assert options.burst_s == 50.0
    assert options.request_rate == 15.0  # below nginx's per-client 20 r/s
    kinds = {(f.kind, f.target) for f in DEFAULT_FAULTS}
    assert (STOP, "postgres") in kinds and (KILL_INSTANCE, "notifier") in kinds
    assert next(f for f in DEFAULT_FAULTS if f.kind == STOP).down_s == 20.0


def test_plan_puts_each_fault_at_its_offset_and_gaps_between_bursts() -> None:
    steps = plan(BurstOptions())
    assert [s.kind for s in steps] == [
        "zero",
        "burst",
        "fault",
        "fault",
        "zero",
        "burst",
        "fault",
        "fault",
        "zero",
        "burst",
        "fault",
        "restore",
        "drain",
    ]
    burst_three = [s for s in steps if s.burst == 3 and s.kind != "drain"]
    # load alone until 30 % (15 s), PostgreSQL stopped until 15 + 20 s, starting until the end.
    assert [s.until_s for s in burst_three] == [15.0, 35.0, 50.0]
    assert burst_three[1].phase == "burst 3 · postgres stopped 20 s"
    assert burst_three[2].phase == "burst 3 · postgres starting"
    names = [s.phase for s in steps]
    assert len(names) == len(set(names))  # phases are keyed by name in the report


def test_every_burst_ends_at_the_burst_length() -> None:
    options = BurstOptions(bursts=2, events=2_000, rate=100.0, batch=10, faults=())
    steps = plan(options)
    assert [(s.kind, s.until_s) for s in steps] == [
        ("zero", None),
        ("burst", 10.0),
        ("zero", None),
        ("burst", 10.0),
        ("drain", None),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch": 10}, "raise --batch"),  # 300 events/s in tens: 30 req/s
        ({"events": 3_000}, "make the bursts longer"),  # 10 s bursts cannot hold a 20 s outage at 30 %
        ({"faults": (FaultAt(4, 0.5, KILL_INSTANCE, "notifier"),)}, "not inside"),
        ({"flagged_share": 1.5}, "--flagged-share"),
    ],
)
def test_validate_says_which_option_to_change(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(BurstOptions(), **change).validate()


def test_quick_is_small_and_valid() -> None:
    quick = QUICK.validate()
    assert quick.events < 5_000 and quick.gap_s is not None
    assert next(f for f in quick.faults if f.kind == STOP).down_s == 5.0


# --- the shop's flagged orders --------------------------------------------------------------------


def test_catalog_orders_never_reach_the_threshold_and_big_tickets_always_do() -> None:
    most = 3 * sum(sorted(price for _, price in CATALOG)[-3:])
    assert most < 1000 < BIG_TICKET[1]
    shop = Shop("run-1", seed=7)
    for _ in range(200):
        assert shop.order().data["amount"] < 1000
        assert shop.order(flagged=True).data["amount"] > 1000


def test_burst_batches_have_the_shares_asked_for() -> None:
    shop = Shop("run-1", seed=3)
    events = [e for _ in range(200) for e in shop.burst(20, order_share=0.5, flagged_share=0.78)]
    orders = [e for e in events if e.type == ORDER]
    flagged = [o for o in orders if o.data["amount"] > 1000]
    assert len(events) == 4_000
    assert 0.45 < len(orders) / len(events) < 0.55
    assert 0.73 < len(flagged) / len(orders) < 0.83
    order_ids = {o.data["orderId"] for o in orders}
    assert all(e.data["orderId"] in order_ids for e in events if e.type == PAYMENT)


# --- the notifications path -------------------------------------------------------------------------


def mail(event_id: str, message_id: str) -> bytes:
    return (
        "X-Ripple-Envelope-From: a@b\r\nSubject: Flagged order\r\n"
        f"Message-ID: {message_id}\r\nX-Ripple-Event-Source: /ripple/order-alerts\r\n"
        f"X-Ripple-Event-Id: {event_id}\r\n\r\nX-Ripple-Event-Id: not-this\r\n"
    ).encode()


def test_parse_mail_head_reads_the_notifiers_headers_only() -> None:
    found = parse_mail_head(mail("alert-1", "<m-1@ripple.notifier>"))
    assert found is not None
    assert (found.event_id, found.message_id) == ("alert-1", "<m-1@ripple.notifier>")
    assert parse_mail_head(b"Subject: hello\r\n\r\nbody") is None


def reading(**change) -> PathReading:
    base = PathReading(
        flagged={"o1": 100.0, "o2": 101.0, "o3": 130.0},
        alerts={"o1": ["a1"], "o2": ["a2"], "o3": ["a3"]},
        notifications={"a1": ("sent", 101.0), "a2": ("sent", 104.0), "a3": ("sent", 160.0)},
        mails={"a1": ["<m1>"], "a2": ["<m2>"], "a3": ["<m3>"]},
        dead_letters=0,
        accepted_flagged=3,
    )
    return replace(base, **change)


def results(found) -> dict[str, str]:
    return {check.name.split(" (")[0]: check.result for check in found}


def test_a_clean_path_passes_every_check() -> None:
    assert set(results(check_path(reading())).values()) == {PASS, INFO}


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"alerts": {"o1": ["a1"], "o2": ["a2"]}}, "every flagged order alerted once"),
        (
            {"alerts": {"o1": ["a1"], "o2": ["a2"], "o3": ["a3"], "o9": ["a9"]}},
            "every flagged order alerted once",
        ),
        (
            {"mails": {"a1": ["<m1>"], "a2": ["<m2>", "<m2b>"], "a3": ["<m3>"]}},
            "every flagged order mailed once",
        ),
        ({"mails": {"a1": ["<m1>"], "a2": ["<m2>"]}}, "every flagged order mailed once"),
        (
            {"notifications": {"a1": ("sent", 101.0), "a2": ("pending", None), "a3": ("sent", 160.0)}},
            "every flagged order recorded once as sent",
        ),
        ({"dead_letters": 2}, "no dead letters from the run"),
    ],
)
def test_each_broken_promise_fails_its_own_check(change: dict, failed: str) -> None:
    found = results(check_path(reading(**change)))
    assert found.pop(failed) == FAIL
    assert set(found.values()) == {PASS, INFO}


def test_a_resend_with_the_same_message_id_is_one_mail_and_is_counted() -> None:
    found = check_path(reading(mails={"a1": ["<m1>"], "a2": ["<m2>", "<m2>"], "a3": ["<m3>"]}))
    by_name = {c.name: c for c in found}
    assert by_name["every flagged order mailed once (mail sink, by Message-ID)"].result == PASS
    resent = by_name["mails resent with the same Message-ID"]
    assert resent.result == INFO and resent.detail.startswith("1 orders'")


def test_delays_leave_out_the_orders_placed_during_an_outage() -> None:
    # o3 was placed at 130 s, inside an outage from 120 to 150 s: its 30 s is the outage's.
    found = delays(
        reading(), [("burst 1", 90.0, 120.0), ("burst 1 · postgres stopped", 120.0, 150.0)], [(120.0, 150.0)]
    )
    assert (found.everything.orders, found.everything.max_s) == (3, 30.0)
    assert (found.outside_outages.orders, found.outside_outages.max_s) == (2, 3.0)
    assert [(row.name, row.orders) for row in found.by_phase] == [
        ("burst 1", 2),
        ("burst 1 · postgres stopped", 1),
    ]
    checks = check_delay(found, limit_s=10.0)
    assert [c.result for c in checks] == [PASS, INFO]
    assert "| placed outside the outages | 2 | 2 |" in delay_table(found)


def test_the_delay_check_fails_above_the_limit_or_with_an_order_never_notified() -> None:
    slow = reading(notifications={"a1": ("sent", 101.0), "a2": ("sent", 125.0), "a3": ("sent", 131.0)})
    assert check_delay(delays(slow, [], []), limit_s=10.0)[0].result == FAIL
    unsent = reading(notifications={"a1": ("sent", 101.0), "a2": ("pending", None), "a3": ("sent", 131.0)})
    assert check_delay(delays(unsent, [], []), limit_s=10.0)[0].result == FAIL


def test_back_to_zero_fails_when_a_gap_timed_out() -> None:
    assert check_back_to_zero([("idle 1", 130.0, True), ("idle 2", 141.0, True)]).result == PASS
    missed = check_back_to_zero([("idle 1", 130.0, True), ("idle 2", 600.0, False)])
    assert missed.result == FAIL and "idle 2: 600 s (not reached)" in missed.detail
    assert check_back_to_zero([]).result == INFO


@pytest.mark.parametrize(
    ("stamps", "hop", "expected"),
    [
        # placed, stored, alert row, emitted, outbox row, sent
        ([(0.0, 1.0, 2.0, 2.5, 2.75, 3.0)], "order placed -> alert row", (1, 2.0, 2.0, 2.0)),
        ([(0.0, 1.0, 2.0, 2.5, 2.75, 3.0)], "alert row -> Kafka and Broker confirmed", (1, 0.5, 0.5, 0.5)),
        ([(0.0, 1.0, 2.0, 2.5, 2.75, 3.0)], "alert row -> mail accepted", (1, 1.0, 1.0, 1.0)),
        ([(0.0, 1.0, 2.0, 2.5, 2.75, 3.0)], "order placed -> mail accepted", (1, 3.0, 3.0, 3.0)),
        # an order not yet alerted counts in the store hop only
        ([(0.0, 4.0, None, None, None, None)], "order placed -> stored by event-store", (1, 4.0, 4.0, 4.0)),
        ([(0.0, 4.0, None, None, None, None)], "order placed -> alert row", (0, None, None, None)),
        # p50 interpolates between ranks, p99 sits near the largest
        (
            [(0.0, 0.0, 1.0, 0, 0, 0), (0.0, 0.0, 3.0, 0, 0, 0)],
            "order placed -> alert row",
            (2, 2.0, 2.98, 3.0),
        ),
    ],
)
def test_hop_rows_time_each_hop_over_the_orders_that_passed_it(stamps, hop, expected) -> None:
    rows = {row.hop: row for row in hop_rows(stamps)}
    assert len(rows) == len(HOPS)
    row = rows[hop]
    assert (row.orders, row.p50_s, row.p99_s, row.max_s) == expected


PHASES = [("burst 1", 100.0, 120.0), ("idle 1", 120.0, 150.0), ("drain", 150.0, 160.0)]


@pytest.mark.parametrize(
    ("sent_at", "expected"),
    [
        pytest.param(
            [],
            [
                MailRate("burst 1", 20.0, 0, 0.0, 0.0),
                MailRate("idle 1", 30.0, 0, 0.0, 0.0),
                MailRate("drain", 10.0, 0, 0.0, 0.0),
            ],
            id="no mails",
        ),
        pytest.param(
            # 2/s through the burst, then a backlog of 60 drained in 3 s of the gap.
            [100.0 + i / 2 for i in range(40)] + [121.0 + i / 20 for i in range(60)],
            [
                MailRate("burst 1", 20.0, 40, 2.0, 2.0),
                MailRate("idle 1", 30.0, 60, 2.0, 6.0),
                MailRate("drain", 10.0, 0, 0.0, 0.0),
            ],
            # The burst's best 10 s are its own 2/s, not the backlog drained right after it.
            id="the gap drains faster than the burst",
        ),
        pytest.param(
            [99.9, 160.0, 165.0],  # before the first phase, at the last one's end, after it
            [
                MailRate("burst 1", 20.0, 0, 0.0, 0.0),
                MailRate("idle 1", 30.0, 0, 0.0, 0.0),
                MailRate("drain", 10.0, 0, 0.0, 0.0),
            ],
            id="outside every phase",
        ),
    ],
)
def test_mail_rates_count_each_phase_and_its_best_10_s(sent_at, expected) -> None:
    assert mail_rates(sent_at, PHASES) == expected


# --- when each hop caught up after an outage ------------------------------------------------------

# (placed, stored, alert row, confirmed, outbox row, mail accepted); the outage from 100 to 120.
BACKLOG = (110.0, 121.0, 122.0, 122.1, 126.0, 126.5)  # placed during it: everything after the return
AFTER_1 = (121.0, 121.1, 124.0, 124.1, 127.0, 127.5)  # placed right after: behind the backlog
AFTER_2 = (123.0, 123.1, 125.0, 125.1, 129.0, 129.5)
LATE = (127.0, 127.1, 127.2, 127.3, 127.4, 127.5)  # caught up
NEVER_MAILED = (128.0, 128.1, 128.2, 128.3, None, None)


@pytest.mark.parametrize(
    ("stamps", "after_s", "expected"),
    [
        pytest.param([], 20.0, [], id="no orders: no rows"),
        pytest.param(
            [BACKLOG, AFTER_1, AFTER_2, LATE],
            10.0,
            [
                ("during", 1, (1.0, 2.0, 2.1, 6.0, 6.5), 16.5),
                ("+0-5 s", 2, (2.1, 4.5, 4.6, 8.0, 8.5), 6.5),
                ("+5-10 s", 1, (7.1, 7.2, 7.3, 7.4, 7.5), 0.5),
            ],
            id="the backlog, then the orders behind it, each stamp after the return",
        ),
        pytest.param(
            [NEVER_MAILED, (90.0, 91.0, 91.0, 91.0, 91.0, 91.0), (150.0, 151.0, 151.0, 151.0, 151.0, 151.0)],
            10.0,
            [("+5-10 s", 1, (8.1, 8.2, 8.3, None, None), None)],
            id="stamps never reached stay empty; orders before or long after are left out",
        ),
        pytest.param([LATE], 9.0, [("+5-9 s", 1, (7.1, 7.2, 7.3, 7.4, 7.5), 0.5)], id="a short last window"),
    ],
)
def test_recovery_rows_time_the_stamps_from_the_components_return(stamps, after_s, expected) -> None:
    rows = recovery_rows(stamps, [("postgres stopped 20 s", 100.0, 120.0)], after_s=after_s, step_s=5.0)
    assert [(r.placed, r.orders, r.medians, r.delay_p99_s) for r in rows] == expected
    assert all(r.outage == "postgres stopped 20 s" for r in rows)


def test_recovery_table_names_the_stamps() -> None:
    table = recovery_table(recovery_rows([BACKLOG], [("rabbitmq restarted", 100.0, 120.0)]))
    assert table.splitlines()[0] == (
        "| outage | orders placed | orders | stored by event-store | alert row | Kafka and Broker confirmed"
        " | notifier's outbox row | mail accepted | order -> mail p99 s |"
    )
    assert "| rabbitmq restarted | during | 1 | 1 | 2 | 2.1 | 6 | 6.5 | 16.5 |" in table
