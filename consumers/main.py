"""`skyra-stream worker`: wire engine, pipeline, publisher, consumer, health server, signals."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import structlog

from consumers.worker import EXIT_FATAL, IngestWorker
from producers.outcomes import OutcomePublisher
from skyra_stream.api.app import create_app
from skyra_stream.api.server import HttpServer
from skyra_stream.api.service import AnalyzeService
from skyra_stream.engine import VerdictEngine
from skyra_stream.health import HealthState
from skyra_stream.metrics import Metrics
from skyra_stream.pipeline import Pipeline
from skyra_stream.settings import Settings

log = structlog.get_logger(__name__)


def run_worker(settings: Settings) -> int:
    """Run until SIGTERM (exit 0 after draining) or a fatal error (exit 1)."""
    metrics = Metrics()
    health = HealthState()
    engine = VerdictEngine(settings)
    service = AnalyzeService(settings, engine, metrics) if settings.api_enabled else None
    app = create_app(settings, health, metrics, service, api=settings.api_enabled)
    server = HttpServer(
        app, settings.http_host, settings.http_port, graceful_timeout_s=settings.api_timeout_s
    ).start()
    log.info("http_listening", port=server.port, api=settings.api_enabled)
    stopping = threading.Event()
    worker: IngestWorker | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal", signal=signal.Signals(signum).name)
        stopping.set()
        if worker is not None:
            worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    publisher: OutcomePublisher | None = None
    try:
        engine.start()
        health.ready_when("engine", lambda: engine.ready)
        if stopping.is_set():
            return 0
        publisher = OutcomePublisher(settings)
        pipeline = Pipeline(settings, engine, publisher, metrics=metrics)
        worker = IngestWorker(
            settings, pipeline, flush=publisher.flush, metrics=metrics, health=health
        )
        if stopping.is_set():
            worker.stop()
        code = worker.run()
        pipeline.close()
        return code
    except Exception:
        log.exception("worker_crashed")
        return EXIT_FATAL
    finally:
        if publisher is not None:
            publisher.close()
        server.close()  # API callers finish before the engine goes
        if service is not None:
            service.close()
        engine.close()
        log.info("exit")
        sys.stderr.flush()
