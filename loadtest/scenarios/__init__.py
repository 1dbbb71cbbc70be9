"""ripple's failure scenarios: `python -m loadtest.scenarios <name>` (see loadtest/README.md)."""
