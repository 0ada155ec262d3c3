"""A real Label Studio server on loopback for the review console's tests and demo.

Label Studio pins Django, numpy, redis and boto3 at versions that differ from ours, so it
lives in a virtual environment of its own (`make label-studio`, scripts/install-label-studio.sh)
and is started from there as a subprocess on SQLite, headless, with a preset admin and a legacy
API token (`Authorization: Token ...`) taken from its environment variables. The bridge talks to
it over HTTP exactly as it would to a production Label Studio.

Reviewers other than the admin are made through the signup API, each with its own token,
so a test can annotate as a person would and see that person's name come back as `reviewer`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from skyra_stream.devstack.broker import free_port

DEFAULT_VENV = ".venv-label-studio"


def label_studio_binary() -> Path:
    """`SKYRA_LABEL_STUDIO_BIN`, else the venv that `make label-studio` makes."""
    configured = os.environ.get("SKYRA_LABEL_STUDIO_BIN")
    candidates = [Path(configured)] if configured else []
    root = Path(__file__).resolve().parents[2]
    candidates += [
        Path.cwd() / DEFAULT_VENV / "bin/label-studio",
        root / DEFAULT_VENV / "bin/label-studio",
    ]
    for path in candidates:
        if path.is_file():
            return path
    found = shutil.which("label-studio")
    if found:
        return Path(found)
    raise RuntimeError("no label-studio binary: run `make label-studio` (its own venv)")


class LabelStudioServer:
    """One Label Studio on loopback; `url`, `token` (the admin's) and `username`."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        self.username = "admin@skyra.test"
        self.password = secrets.token_urlsafe(16)
        self.token = secrets.token_hex(20)  # Label Studio's legacy tokens are 40 hex digits
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240.0) -> LabelStudioServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "false",
            # Webhooks to the bridge on loopback: Label Studio refuses private addresses
            # unless told otherwise (SSRF protection), which a production install keeps.
            "SSRF_PROTECTION_ENABLED": "false",
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(label_studio_binary()),
                    "start",
                    "--no-browser",
                    "--port",
                    str(self.port),
                    "--host",
                    self.url,
                    "--internal-host",
                    "127.0.0.1",
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited {self.proc.returncode}: {self.log_path}")
            try:
                answer = httpx.get(
                    f"{self.url}/api/projects",
                    headers={"Authorization": f"Token {self.token}"},
                    timeout=2.0,
                )
                if answer.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"label-studio not ready after {timeout_s:.0f} s: {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def add_reviewer(self, email: str) -> Reviewer:
        """A reviewer account, signed up through the page as a person would, and its API
        token from its account."""
        password = secrets.token_urlsafe(12)
        with httpx.Client(base_url=self.url, timeout=30.0, follow_redirects=False) as client:
            client.get("/user/signup/")
            client.post(
                "/user/signup/",
                data={
                    "email": email,
                    "password": password,
                    "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
                },
                headers={"Referer": f"{self.url}/user/signup/"},
            )
            answer = client.get("/api/current-user/token")
            if answer.status_code != 200:
                raise RuntimeError(f"no token for {email}: {answer.status_code}")
            return Reviewer(email=email, password=password, token=str(answer.json()["token"]))


@dataclass(frozen=True)
class Reviewer:
    email: str
    password: str
    token: str
