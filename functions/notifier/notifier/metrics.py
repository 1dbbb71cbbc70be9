"""The notifier's Prometheus metrics: what it did with each event, and how late the mail was.

ripple_notifier_alert_to_mail_seconds is the delay from the flagged event's `time` (order-alerts
sets it when it flags the order) to the SMTP server's acceptance of the mail: the whole
notifications path (Broker, queue, Trigger, retries, the send) as the fraud desk feels it. A
resend of a pending row is observed again (its delay is the late one); an event without `time`
is not observed. Alert rule: RippleNotificationsLate (infra/prometheus/rules/broker.yaml).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HANDLED = Counter("ripple_notifier_events", "Events handled by the notifier", ["outcome"])
ALERT_TO_MAIL = Histogram(
    "ripple_notifier_alert_to_mail_seconds",
    "Delay from a flagged order event's time to the mail server's acceptance of its e-mail",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
