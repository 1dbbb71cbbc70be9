"""nginx from the Debian package, rendering ripple's edge config from nginx/."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from string import Template

from ..component import Component, Program, Say, http_status, require_binary, run, running_as_root
from ..settings import REPO_ROOT, Settings

TEMPLATE = REPO_ROOT / "nginx" / "nginx.conf.template"
# Debian's nginx package creates this account; workers drop to it when the stack runs as root.
WORKER_USER = "www-data"


class Nginx(Component):
    name = "nginx"
    description = "nginx edge"

    def run_dir(self, settings: Settings) -> Path:
        return settings.run_dir / "nginx"

    def config_file(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "nginx.conf"

    def install(self, settings: Settings, say: Say) -> None:
        require_binary("nginx", "nginx")

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        run_dir = self.run_dir(settings)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run_dir / temp).mkdir(parents=True, exist_ok=True)
            if running_as_root():
                shutil.chown(run_dir / temp, WORKER_USER)
        config = Template(TEMPLATE.read_text()).safe_substitute(
            RUN_DIR=str(run_dir),
            LOG_DIR=str(settings.log_dir),
            LISTEN_ADDRESS=f"{settings.host}:{settings.ports['nginx']}",
            GATEWAY_ADDRESS=f"{settings.host}:{settings.ports['gateway']}",
        )
        if running_as_root():
            config = f"user {WORKER_USER};\n" + config
        self.config_file(settings).write_text(config)
        run([*self._nginx(settings), "-t", "-q"])

    def _nginx(self, settings: Settings) -> list[str]:
        return [
            "nginx",
            "-p",
            str(self.run_dir(settings)),
            "-c",
            str(self.config_file(settings)),
            "-e",
            "stderr",
        ]

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        # QUIT lets workers finish the requests they hold.
        return [
            Program(name="nginx", command=[*self._nginx(settings), "-g", "daemon off;"], stop_signal="QUIT")
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        return None if http_status(f"{settings.nginx_url}/nginx-health") == 200 else "not answering"

    def address(self, settings: Settings) -> str:
        return settings.nginx_url
