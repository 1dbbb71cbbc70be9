"""loadtest.serving.exec_ready: an importtime profile read into its total and biggest top-level imports."""

from __future__ import annotations

from loadtest.serving.exec_ready import summarize

PROFILE = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |     _io
import time:      2000 |       2000 |     flask.json
import time:      1000 |       3100 |   flask
import time:       500 |        500 | encodings
import time:       400 |      10400 | uvicorn
import time:       200 |       3300 | site
not an import line
"""


def test_total_is_every_self_time_and_roots_are_the_top_level_by_cumulative_time():
    total, roots = summarize(PROFILE)
    assert total == 4.2
    assert roots == [("uvicorn", 10.4), ("site", 3.3), ("encodings", 0.5)]


def test_top_limits_the_roots():
    assert summarize(PROFILE, top=1)[1] == [("uvicorn", 10.4)]
