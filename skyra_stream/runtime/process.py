"""Process wiring of `skyra-stream worker` and `skyra-stream serve`, written once.

    metrics, health ─► engine ─► Analysis ─┬─► AnalyzeService ─► HTTP app (API, when on)
                                           └─► Pipeline ─► OutcomePublisher     (worker)
                                                  ▲
                                             IngestLoop (the Kafka consumer)
    HTTP server: /healthz, /readyz, /metrics always

Both commands are this one function: the worker adds the Kafka consumer and publisher, the
API server leaves them out. One signal handler decides how the process stops; the order is
always the same: stop taking work, let the consumer drain and commit, let running HTTP
requests finish, then close the analysis pools and, last, the engine that everything above
was using.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol

import structlog

from skyra_stream.api.app import Router, create_app
from skyra_stream.api.http_server import HttpServer
from skyra_stream.api.service import AnalyzeService
from skyra_stream.consumers.ingest_loop import IngestLoop
from skyra_stream.health import HealthState
from skyra_stream.metrics import Metrics
from skyra_stream.pipeline import Pipeline
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.producers.outcomes import OutcomePublisher
from skyra_stream.runtime.configs import kafka_config, pipeline_config, service_config
from skyra_stream.runtime.wiring import (
    build_analysis,
    build_engine,
    jobs_service,
    review_tickets,
)
from skyra_stream.settings import Settings, unknown_variables

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1


def run(settings: Settings, *, kafka: bool) -> int:
    """Run until SIGTERM/SIGINT (exit 0 after draining) or a fatal error (exit 1).

    `kafka=True` is the worker (the API too with SKYRA_API_ENABLED); `kafka=False` is the
    API server alone."""
    metrics = Metrics()
    metrics.unknown_settings.set(len(unknown_variables(os.environ)))
    health = HealthState()
    engine = build_engine(settings)
    analysis = build_analysis(settings, engine, metrics=metrics)
    api = settings.api_enabled or not kafka
    service = AnalyzeService(analysis, service_config(settings)) if api else None
    stopping = threading.Event()
    health.ready_when("engine", lambda: engine.ready)
    if not kafka:  # the worker's own readiness says when it stops taking work
        health.ready_when("not_stopping", lambda: not stopping.is_set())
    # Async jobs publish to the ingest topic from the API process (acks=all per job).
    jobs_producer = (
        IngestProducer(kafka_config(settings)) if api and settings.jobs_enabled else None
    )
    jobs = jobs_service(settings, jobs_producer) if jobs_producer is not None else None
    server = HttpServer(
        create_app(settings, health, metrics, service, api=api, jobs=jobs),
        settings.http_host,
        settings.http_port,
        graceful_timeout_s=settings.api_timeout_s,
    ).start()
    log.info("http_listening", host=settings.http_host, port=server.port, api=api)
    worker: IngestLoop | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal", signal=signal.Signals(signum).name)
        stopping.set()
        if worker is not None:
            worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    publisher: OutcomePublisher | None = None
    code = EXIT_OK
    try:
        engine.start()
        if not kafka:
            log.info("serving")
            while not stopping.wait(1.0):
                if engine.dead is not None:
                    log.error("engine_dead", error=repr(engine.dead))
                    code = EXIT_FATAL
                    break
        elif not stopping.is_set():
            topics = kafka_config(settings)
            publisher = OutcomePublisher(topics, tickets=review_tickets(settings))
            pipeline = Pipeline(pipeline_config(settings), analysis, publisher)
            worker = IngestLoop(
                topics, pipeline, flush=publisher.flush, metrics=metrics, health=health
            )
            if stopping.is_set():  # the signal came while the consumer was being built
                worker.stop()
            code = worker.run()
    except Exception:
        log.exception("crashed")
        code = EXIT_FATAL
    finally:
        # Each step runs whatever the one before it raised: a producer that cannot flush
        # (the broker gone) once skipped closing the engine here.
        steps: list[tuple[str, Callable[[], None]]] = [
            ("server", lambda: server.close(timeout_s=settings.api_timeout_s + 5)),
            ("analysis", analysis.close),
            ("engine", engine.close),
        ]
        if publisher is not None:
            steps.insert(0, ("publisher", publisher.close))
        if jobs_producer is not None:
            steps.insert(0, ("jobs producer", jobs_producer.close))
        for name, close in steps:
            try:
                close()
            except Exception:
                log.warning("close_failed", part=name, exc_info=True)
                code = code or EXIT_FATAL
        log.info("exit", code=code)
        sys.stderr.flush()
    return code


def serve_probes(
    settings: Settings,
    metrics: Metrics,
    ready: Callable[[], bool],
    routers: Sequence[Router] = (),
) -> HttpServer:
    """Probes and metrics, for the processes without the API (`webhooks`, `review-console`),
    with the routes of their own (the review console's webhook)."""
    metrics.unknown_settings.set(len(unknown_variables(os.environ)))
    health = HealthState()
    health.ready_when("ready", ready)
    app = create_app(settings, health, metrics, api=False)
    for router in routers:
        app.include_router(router)
    server = HttpServer(app, settings.http_host, settings.http_port).start()
    log.info("http_listening", host=settings.http_host, port=server.port, api=False)
    return server


class ProbedLoop(Protocol):
    """A Kafka loop run beside its probes (the webhook loop, the review console)."""

    metrics: Metrics

    def ready(self) -> bool: ...

    def run(self) -> int: ...

    def stop(self) -> None: ...


def run_with_probes(settings: Settings, loop: ProbedLoop, routers: Sequence[Router] = ()) -> int:
    """Serve the loop's probes (and routes), run it until SIGTERM or SIGINT asks it to stop,
    then close the HTTP server: the loop's exit code."""
    server = serve_probes(settings, loop.metrics, loop.ready, routers=routers)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    try:
        return loop.run()
    finally:
        server.close(timeout_s=5)
