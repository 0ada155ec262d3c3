"""`skyra-stream serve`: the analyze API alone, on its own engine."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import structlog

from skyra_stream.api.app import create_app
from skyra_stream.api.server import HttpServer
from skyra_stream.api.service import AnalyzeService
from skyra_stream.engine import VerdictEngine
from skyra_stream.health import HealthState
from skyra_stream.metrics import Metrics
from skyra_stream.settings import Settings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1


def run_server(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (exit 0 once running requests finish) or engine death (1)."""
    metrics = Metrics()
    health = HealthState()
    engine = VerdictEngine(settings)
    service = AnalyzeService(settings, engine, metrics)
    stopping = threading.Event()
    health.ready_when("engine", lambda: engine.ready)
    health.ready_when("not_stopping", lambda: not stopping.is_set())
    server = HttpServer(
        create_app(settings, health, metrics, service),
        settings.http_host,
        settings.http_port,
        graceful_timeout_s=settings.api_timeout_s,
    ).start()
    log.info("http_listening", host=settings.http_host, port=server.port, api=True)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = EXIT_OK
    try:
        engine.start()
        log.info("serving")
        while not stopping.wait(1.0):
            if engine.dead is not None:
                log.error("engine_dead", error=repr(engine.dead))
                code = EXIT_FATAL
                break
    except Exception:
        log.exception("server_crashed")
        code = EXIT_FATAL
    finally:
        server.close(timeout_s=settings.api_timeout_s + 5)
        service.close()
        engine.close()
        log.info("exit", code=code)
        sys.stderr.flush()
    return code
