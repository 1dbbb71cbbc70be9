"""The dashboard's HTTP server: the page, its model, and Prometheus's query API on one origin.

Routes (all GET unless said):
  /                          the page (static/index.html)
  /static/<file>             the page's script and style
  /vendor/<file>             uPlot's built files, installed by `npm ci` (package-lock.json pins it)
  /api/dashboard             the page model of the dashboard JSON (model.page_model), read anew each time
  /api/variables/<name>      the options of a `query` template variable, from Prometheus
  /api/v1/query, /api/v1/query_range (GET or POST)
                             Prometheus's query API: template variables (`var-<name>` parameters,
                             `range` for an instant query's $__range) are replaced, then the query is
                             forwarded to Prometheus and its answer (an error included) passed back
  /healthz                   200 when the dashboard JSON reads and Prometheus answers, else 503 and why
"""

from __future__ import annotations

import json
import logging
import mimetypes
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .model import DashboardError, load_dashboard_json, page_model
from .variables import interpolate, options_from_values, parse_variable_query

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Files of the uPlot package the page loads, relative to node_modules/uplot/dist.
VENDOR_FILES = {"uPlot.iife.min.js": "uPlot.iife.min.js", "uPlot.min.css": "uPlot.min.css"}
PROXIED = ("/api/v1/query", "/api/v1/query_range")

log = logging.getLogger("ripple_dashboard")


@dataclass(frozen=True)
class Config:
    """Where the server listens, what it reads and where Prometheus is."""

    host: str
    port: int
    dashboard_file: Path
    prometheus_url: str
    vendor_dir: Path  # node_modules/uplot/dist of the `npm ci` install
    timeout_s: float = 30.0


class PrometheusUnavailable(Exception):
    """Prometheus did not answer; the message says where it was looked for and what to do."""


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__((config.host, config.port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing a kept-alive connection is no error; anything else is logged."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)

    def model(self) -> dict[str, Any]:
        return page_model(load_dashboard_json(self.config.dashboard_file))

    def prometheus(self, path: str, params: list[tuple[str, str]], method: str = "POST") -> tuple[int, bytes]:
        """Ask Prometheus (a form POST, or GET for the label API); its status and body, errors included."""
        url = f"{self.config.prometheus_url}{path}"
        data = urllib.parse.urlencode(params)
        if method == "GET":
            request = urllib.request.Request(f"{url}?{data}" if data else url)
        else:
            request = urllib.request.Request(
                url,
                data=data.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                method="POST",
            )
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PrometheusUnavailable(
                f"Prometheus at {self.config.prometheus_url} does not answer ({reason}): "
                "start it with `make up` (or `make start-prometheus`), or set RIPPLE_PROMETHEUS_PORT"
            ) from None


def prometheus_error(status: int, error_type: str, message: str) -> tuple[int, bytes]:
    """An answer shaped like Prometheus's own errors, so the page shows every error the same way."""
    return status, json.dumps({"status": "error", "errorType": error_type, "error": message}).encode()


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _file(self, path: Path, cache: bool = False) -> None:
        if not path.is_file():
            self._json(404, {"error": f"{self.path} not found"})
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        self._send(200, path.read_bytes(), content_type, cache)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        self._route(url.path, params)

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        params += urllib.parse.parse_qsl(body, keep_blank_values=True)
        if url.path not in PROXIED:
            self._json(405, {"error": "only the query API accepts POST"})
            return
        self._route(url.path, params)

    def _route(self, path: str, params: list[tuple[str, str]]) -> None:
        try:
            if path in ("/", "/index.html"):
                self._file(STATIC_DIR / "index.html")
            elif path.startswith("/static/") and "/" not in path[len("/static/") :]:
                self._file(STATIC_DIR / path[len("/static/") :])
            elif path.startswith("/vendor/") and path[len("/vendor/") :] in VENDOR_FILES:
                self._vendor(path[len("/vendor/") :])
            elif path == "/api/dashboard":
                self._json(200, self.server.model())
            elif path.startswith("/api/variables/"):
                self._variable_options(urllib.parse.unquote(path[len("/api/variables/") :]), params)
            elif path in PROXIED:
                self._query(path, params)
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            elif path == "/healthz":
                self._health()
            else:
                self._json(404, {"error": f"{path} not found: the page is at /"})
        except DashboardError as error:
            self._json(500, {"status": "error", "errorType": "dashboard", "error": str(error)})
        except PrometheusUnavailable as error:
            status, body = prometheus_error(502, "unavailable", str(error))
            self._send(status, body, "application/json")
        except Exception as error:  # one broken request must not drop the connection without a word
            log.exception("%s failed", path)
            self._json(
                500, {"status": "error", "errorType": "internal", "error": f"{type(error).__name__}: {error}"}
            )

    def _vendor(self, name: str) -> None:
        path = self.server.config.vendor_dir / VENDOR_FILES[name]
        if not path.is_file():
            message = f"{path} is missing: run `make up` (it runs `npm ci` for the dashboard) and reload"
            self._send(503, f"/* {message} */".encode(), "text/plain; charset=utf-8")
            return
        self._file(path, cache=True)

    def _query(self, path: str, params: list[tuple[str, str]]) -> None:
        selected: dict[str, list[str]] = {}
        forwarded: list[tuple[str, str]] = []
        values = dict(params)
        for key, value in params:
            if key.startswith("var-"):
                selected.setdefault(key[4:], []).append(value)
            elif key != "range":
                forwarded.append((key, value))
        try:
            if path.endswith("query_range"):
                range_s = float(values["end"]) - float(values["start"])
                step_s = _seconds(values["step"])
            else:
                range_s = float(values.get("range") or 3600)
                step_s = 0.0
            variables = self.server.model()["variables"]
            forwarded = [
                (key, interpolate(value, variables, selected, range_s, step_s) if key == "query" else value)
                for key, value in forwarded
            ]
        except (KeyError, ValueError) as error:
            status, body = prometheus_error(400, "bad_data", f"cannot prepare the query: {error}")
            self._send(status, body, "application/json")
            return
        status, body = self.server.prometheus(path, forwarded)
        self._send(status, body, "application/json")

    def _variable_options(self, name: str, params: list[tuple[str, str]]) -> None:
        variables = self.server.model()["variables"]
        variable = next((v for v in variables if v["name"] == name), None)
        if variable is None:
            self._json(404, {"error": f"the dashboard has no variable {name!r}"})
            return
        if not variable["dynamic"]:
            self._json(200, {"options": variable["options"]})
            return
        try:
            query = parse_variable_query(variable["query"])
        except ValueError as error:
            self._json(400, {"error": str(error)})
            return
        selected: dict[str, list[str]] = {}
        for key, value in params:
            if key.startswith("var-"):
                selected.setdefault(key[4:], []).append(value)
        if query["kind"] == "label_values":
            match = (
                [("match[]", interpolate(query["selector"], variables, selected, 3600, 0))]
                if query["selector"]
                else []
            )
            status, body = self.server.prometheus(f"/api/v1/label/{query['label']}/values", match, "GET")
            answer = _json_or_error(body)
            found = answer.get("data") or [] if status == 200 else []
        else:
            expr = interpolate(query["expr"], variables, selected, 3600, 0)
            status, body = self.server.prometheus("/api/v1/query", [("query", expr)])
            answer = _json_or_error(body)
            results = (answer.get("data") or {}).get("result") or [] if status == 200 else []
            # Grafana's query_result options: one "metric{labels} value timestamp" line per series.
            found = [_series_line(r) for r in results]
        if status != 200:
            self._json(status, {"error": answer.get("error", body.decode(errors="replace"))})
            return
        options = options_from_values(found, variable.get("regex", ""))
        if variable["includeAll"]:
            options = [{"text": "All", "value": "$__all"}, *options]
        self._json(200, {"options": options})

    def _health(self) -> None:
        try:
            self.server.model()
        except DashboardError as error:
            self._send(503, str(error).encode(), "text/plain; charset=utf-8")
            return
        try:
            status, _ = self.server.prometheus("/api/v1/query", [("query", "1")])
        except PrometheusUnavailable as error:
            self._send(503, str(error).encode(), "text/plain; charset=utf-8")
            return
        if status != 200:
            self._send(503, f"Prometheus answered {status} to a query".encode(), "text/plain; charset=utf-8")
            return
        self._send(200, b"ok\n", "text/plain; charset=utf-8")


def _series_line(result: dict[str, Any]) -> str:
    metric = dict(result.get("metric") or {})
    name = metric.pop("__name__", "")
    labels = ",".join(f'{key}="{value}"' for key, value in metric.items())
    timestamp, value = result.get("value") or (0, "")
    return f"{name}{{{labels}}} {value} {int(float(timestamp) * 1000)}"


def _json_or_error(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        return {"error": body.decode(errors="replace")[:500] or "an empty answer"}
    return answer if isinstance(answer, dict) else {"error": "an answer that is not a JSON object"}


def _seconds(step: str) -> float:
    """A Prometheus step: a number of seconds or a duration such as 15s, 1m."""
    try:
        return float(step)
    except ValueError:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        for suffix in ("ms", "s", "m", "h", "d"):
            if step.endswith(suffix) and step[: -len(suffix)].isdigit():
                return int(step[: -len(suffix)]) * units[suffix]
        raise ValueError(f"step {step!r} is neither seconds nor a duration such as 15s") from None
