from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest
from moto.server import ThreadedMotoServer

from skyra_stream.devstack.faulty_proxy import FaultyProxy
from skyra_stream.runtime.configs import engine_config

pytest_plugins = ["pytester"]  # tests/test_leftovers.py runs a session of its own

# Fixtures that start a piece of the real stack; a test that uses any of them (directly or
# through another fixture) is marked `stack`, and `make test-fast` leaves it out.
STACK_FIXTURES = frozenset(
    {"moto_server", "s3_proxy", "s3_admin", "tiny_model", "engine", "stack", "api"}
)


# The two longest modules (workers with engines of their own, the demo end to end) first, one
# to each of `make test`'s two processes, the rest after them: `make test` hands out whole
# files in collection order (`--dist loadfile --no-loadscope-reorder`). Ordered by test count,
# as xdist does by default, test_worker.py came last and ran alone for the final 96 s.
LONGEST_FIRST = ("test_worker.py", "test_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's own order is kept


# Credentials for the loopback S3 endpoint only; set before any client is made.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


# Python's own helpers live as long as the interpreter that started them, by design.
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
LEFTOVER_GRACE_S = 15.0  # for a child already told to stop to finish exiting


def _leftovers(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    found = []
    for child in me.children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if child.pid not in before and not any(h in cmdline for h in INTERPRETER_HELPERS):
            found.append(child)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_child_outlives_the_session() -> Iterator[None]:
    """Fails the session (an error at the last teardown, which xdist reports as well) when a
    process a test started is still alive after every fixture has been torn down: a
    `skyra-stream review-console` once outlived `make test-review`. The leftovers are killed
    so that they do not outlive the run either."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    _, alive = psutil.wait_procs(_leftovers(me, before), timeout=LEFTOVER_GRACE_S)
    if not alive:
        return
    names = []
    for proc in alive:
        try:
            names.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.Error:
            continue
    pytest.fail("child processes outlived the tests that started them:\n" + "\n".join(names))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real S3-compatible HTTP endpoint on loopback."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_proxy(moto_server: str) -> Iterator[FaultyProxy]:
    """The moto endpoint behind a proxy that can inject 5xx, 403 and stalls."""
    host, port = moto_server.removeprefix("http://").split(":")
    proxy = FaultyProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_admin(moto_server: str):  # type: ignore[no-untyped-def]
    """A boto3 client straight to moto, for setting up buckets and objects."""
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


# -- the real vLLM engine on the CPU with the tiny model (shared: each start costs ~1 min) --

ENGINE_KV_CACHE_BYTES = 256 << 20


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skyra_stream.model.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def engine_settings(model: Path, **overrides: object):  # type: ignore[no-untyped-def]
    """Small, fixed budgets so that every engine in the suite fits a 2-core CI machine."""
    from skyra_stream.settings import Settings

    values: dict[str, object] = {
        "model_path": model,
        "max_tokens": 48,
        "kv_cache_bytes": ENGINE_KV_CACHE_BYTES,
        "max_num_seqs": 8,
        "max_in_flight": 8,
        # Frames of 256 px short side and up to 16:9 fit; keeps vLLM's profiling run small.
        "mm_max_pixels": 160 * 28 * 28,
        "guided_max_text_chars": 40,
        # No torch.compile: a 4 MB model gains nothing from it, and an engine starts in
        # about 35 s instead of 60 on 2 cores (the pipeline under test is the same).
        "enforce_eager": True,
        # The suite sends the same few clips many times and asserts on each analysis;
        # reuse has its own tests (tests/test_reuse.py).
        "verdict_cache": False,
        # The API tests send bursts on purpose; rate limits have their own tests
        # (tests/test_api_tenants.py).
        "api_rate_per_s": 10_000.0,
        "api_burst": 10_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def engine(tiny_model: Path):  # type: ignore[no-untyped-def]
    """The worker's engine (AsyncLLM), shared by every test that needs one."""
    from skyra_stream.model.vllm_engine import VerdictEngine

    eng = VerdictEngine(engine_config(engine_settings(tiny_model))).start()
    yield eng
    eng.close()
