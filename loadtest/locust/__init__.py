"""The Locust load generator of the shop domain (locustfile.py) and its report (report.py)."""
