"""notifier: e-mails the fraud desk once per flagged order (dev.ripple.shop.order.flagged)."""
