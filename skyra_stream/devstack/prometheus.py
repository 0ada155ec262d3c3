"""A real Prometheus server on loopback (Debian's package), for `make test-ops`: it scrapes the
dev stack's processes, evaluates the project's rules, and answers the same HTTP API an
operator's Grafana and alert routing read.

Nothing here fakes an evaluation: alerts are read back from the server's own
`/api/v1/alerts`, and panel queries run through its `/api/v1/query`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from skyra_stream.devstack.broker import free_port


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError("prometheus is not installed: `make prometheus` (Debian's package)")
    return found


class PrometheusServer:
    """`prometheus` with the given scrape targets (job -> host:port list) and rules, scraping
    and evaluating every `interval_s`; its data in `folder`, gone with it."""

    def __init__(
        self,
        folder: Path,
        targets: dict[str, list[str]],
        rules: dict[str, Any],
        *,
        interval_s: float = 1.0,
    ) -> None:
        # Absolute: Prometheus reads rule_files relative to its config file's folder, and a
        # relative path there matched nothing (0 rules, no error) when the campaign ran from CI.
        folder = folder.resolve()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        interval = f"{int(interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self._log = (folder / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
            doc = json.loads(resp.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"{path}: {doc}")
        return doc["data"]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus not ready")

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), as the server reports them."""
        data: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return data

    def query(self, expr: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._get("/api/v1/query", query=expr)["result"]
        return data

    def rule_count(self) -> int:
        return sum(len(g["rules"]) for g in self._get("/api/v1/rules")["groups"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> PrometheusServer:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
