"""Prometheus and the Pushgateway from the Debian packages."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..component import Component, Program, Say, ScrapeTarget, http_status, require_binary
from ..settings import REPO_ROOT, Settings

# Alert and recording rules: PrometheusRule resources that a cluster applies as they are.
RULES_DIR = REPO_ROOT / "infra" / "prometheus" / "rules"


def write_rule_files(out_dir: Path) -> list[Path]:
    """Write the groups of every PrometheusRule in RULES_DIR as plain Prometheus rule files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):
        stale.unlink()
    written = []
    for source in sorted(RULES_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(source.read_text()):
            if not document or document.get("kind") != "PrometheusRule":
                continue
            target = out_dir / f"{document['metadata']['name']}.yaml"
            target.write_text(yaml.safe_dump({"groups": document["spec"]["groups"]}, sort_keys=False))
            written.append(target)
    return written


def scrape_config(targets: list[ScrapeTarget], rules_dir: Path) -> dict:
    """prometheus.yml: one job per scrape job name, every 5 s unless the job's targets say."""
    jobs: dict[str, dict] = {}
    for target in targets:
        job = jobs.setdefault(
            target.job,
            {
                "job_name": target.job,
                "metrics_path": target.path,
                "honor_labels": target.honor_labels,
                "static_configs": [{"targets": []}],
            },
        )
        if target.interval_s is not None:
            # Below the global scrape_timeout (10 s): Prometheus then uses the interval as the
            # job's timeout (checked with promtool in the unit test).
            job["scrape_interval"] = f"{target.interval_s}s"
        job["static_configs"][0]["targets"].append(target.address)
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(rules_dir / "*.yaml")],
        "scrape_configs": list(jobs.values()),
    }


class Pushgateway(Component):
    name = "pushgateway"
    description = "Prometheus Pushgateway"

    def install(self, settings: Settings, say: Say) -> None:
        require_binary("prometheus-pushgateway", "prometheus-pushgateway")

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            Program(
                name="pushgateway",
                command=[
                    "prometheus-pushgateway",
                    f"--web.listen-address={settings.host}:{settings.ports['pushgateway']}",
                    f"--persistence.file={self.data_dir(settings) / 'metrics'}",
                ],
            )
        ]

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        self.data_dir(settings).mkdir(parents=True, exist_ok=True)

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        return None if http_status(f"{settings.pushgateway_url}/-/ready") == 200 else "not ready"

    def address(self, settings: Settings) -> str:
        return settings.pushgateway_url

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        # honor_labels keeps the job/instance labels of what batch jobs pushed.
        return [
            ScrapeTarget("pushgateway", f"{settings.host}:{settings.ports['pushgateway']}", honor_labels=True)
        ]


class Prometheus(Component):
    name = "prometheus"
    description = "Prometheus"

    def __init__(self, all_components: list[Component]) -> None:
        self.all_components = all_components

    def install(self, settings: Settings, say: Say) -> None:
        require_binary("prometheus", "prometheus")

    def config_file(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "prometheus.yml"

    def rules_dir(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "rules"

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        """Scrape every component of the stack; regenerated at each `make up`."""
        targets = [t for c in self.all_components for t in c.scrape_targets(settings)]
        config = scrape_config(targets, self.rules_dir(settings))
        self.config_file(settings).parent.mkdir(parents=True, exist_ok=True)
        write_rule_files(self.rules_dir(settings))
        self.config_file(settings).write_text(yaml.safe_dump(config, sort_keys=False))
        self.data_dir(settings).mkdir(parents=True, exist_ok=True)

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            Program(
                name="prometheus",
                command=[
                    "prometheus",
                    f"--config.file={self.config_file(settings)}",
                    f"--storage.tsdb.path={self.data_dir(settings)}",
                    f"--web.listen-address={settings.host}:{settings.ports['prometheus']}",
                    "--storage.tsdb.retention.time=7d",
                    # Lets `make up` apply a regenerated scrape config without a restart.
                    "--web.enable-lifecycle",
                ],
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        return None if http_status(f"{settings.prometheus_url}/-/ready") == 200 else "not ready"

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        # The config was rewritten by prepare(); a running Prometheus picks it up on reload.
        request = urllib.request.Request(f"{settings.prometheus_url}/-/reload", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def address(self, settings: Settings) -> str:
        return settings.prometheus_url

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [ScrapeTarget("prometheus", f"{settings.host}:{settings.ports['prometheus']}")]
