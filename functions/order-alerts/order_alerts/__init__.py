"""order-alerts: orders above a threshold raise a dev.ripple.shop.order.flagged event."""
