"""ripple's local dashboard: the Grafana dashboard JSON of infra/grafana drawn live in a browser.

`python -m ripple_dashboard` serves the page (the stack's `dashboard` component, port
RIPPLE_DASHBOARD_PORT, default 19300); see README.md beside this file.
"""
