"""The Locust report: 429s are counted as rejected, not as failures or as accepted."""

from __future__ import annotations

from pathlib import Path

from loadtest.locust.report import main, outcome_line, summary_table

HEADER = (
    '"Type","Name","Request Count","Failure Count","Median Response Time","Average Response Time",'
    '"Min Response Time","Max Response Time","Average Content Size","Requests/s","Failures/s",'
    '"50%","66%","75%","80%","90%","95%","98%","99%","99.9%","99.99%","100%"'
)


def row(name: str, count: int, failures: int, rps: float, p50: str = "20", p99: str = "90") -> str:
    return f'"POST","{name}",{count},{failures},20,25,1,300,40,{rps},0.1,{p50},0,0,0,0,50,0,{p99},0,0,300'


def stats_rows() -> list[dict[str, str]]:
    import csv
    import io

    text = "\n".join(
        [
            HEADER,
            row("page.viewed", 70, 2, 7.0),
            row("429 rejected", 20, 0, 2.0, p50="2", p99="5"),
            row("Aggregated", 100, 2, 10.0).replace('"POST",', '"",'),
        ]
    )
    return list(csv.DictReader(io.StringIO(text)))


def test_outcome_line_separates_accepted_rejected_failed() -> None:
    line = outcome_line(stats_rows())
    assert line.startswith("100 requests: 78 accepted (202, 78.0%), 20 rejected by nginx (429, 20.0%)")
    assert line.endswith("2 failed (2.0%)")


def test_summary_table_names_the_aggregate_row() -> None:
    table = summary_table(stats_rows())
    assert "| all requests | 100 | 2 | 10 | 20 | 50 | 90 | 300 |" in table
    assert "| 429 rejected | 20 | 0 | 2 | 2 | 50 | 5 | 300 |" in table


def test_main_writes_the_report_without_history(tmp_path: Path) -> None:
    rows = stats_rows()
    with (tmp_path / "locust_stats.csv").open("w") as handle:
        handle.write(HEADER + "\n")
        for entry in rows:
            handle.write(",".join(f'"{v}"' for v in entry.values()) + "\n")
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "78 accepted" in text and "| all requests |" in text


def test_main_explains_a_missing_run(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 2
